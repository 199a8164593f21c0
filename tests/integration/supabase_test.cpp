// The supabase preset against Supabase's auth.users (tests/fixtures/supabase/schema.sql):
// after catch-up, users_sync equals what reference.sql computes on the provider, for a
// randomized workload (workload.sql) with soft and hard deletes, with kills in between, after
// an initial copy, and on an older Supabase without is_anonymous.
#include <catch2/catch.hpp>


#include "preset_support.hpp"
#include "sync_fixture.hpp"

namespace authsync::test {

namespace {

SyncOptions supabase_options() {
    SyncOptions o;
    o.provider_ddl = read_preset_fixture("supabase", "schema.sql") + "\n" +
                     read_preset_fixture("supabase", "workload.sql");
    o.mappings_yaml = "  - preset: supabase\n";
    o.log_level = "info";
    return o;
}

void require_in_sync(SyncFixture& f, const std::string& reference = "users") {
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    const auto refs = reference_queries("supabase");
    REQUIRE(refs.count(reference) == 1);
    require_same_rows(
        "users_sync",
        sorted_rows(f.provider().exec_params(refs.at(reference), {std::string("unused")})),
        sorted_rows(f.target().exec(
            "SELECT id, raw_json::text FROM neon_auth.users_sync WHERE deleted_at IS NULL")));
    // Soft-deleted on the provider (deleted_at) or gone: soft-deleted here, never alive.
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE deleted_at IS NULL") ==
          f.provider_value("SELECT count(*) FROM auth.users WHERE deleted_at IS NULL"));
}

void call(SyncFixture& f, const std::string& sql) { f.provider().exec(sql); }

}  // namespace

TEST_CASE("supabase: initial copy, then a randomized workload, equal the provider's own view",
          "[integration][supabase]") {
    SyncFixture f(supabase_options());
    call(f, "CALL supabase_seed(300, 0.11)");
    f.start();
    require_in_sync(f);
    call(f, "CALL supabase_workload(0.21, 2000)");
    require_in_sync(f);
    // Supabase's soft delete and hard deletes both soft-delete.
    CHECK(std::stoi(f.target_value(
              "SELECT count(*) FROM neon_auth.users_sync WHERE deleted_at IS NOT NULL")) > 0);
    // Passwords and tokens stay on the provider.
    auto cols = f.provider_value(
        "SELECT array_to_string(attnames, ',') FROM pg_publication_tables WHERE pubname = "
        "'authsync' AND tablename = 'users'");
    INFO(cols);
    CHECK(cols.find("encrypted_password") == std::string::npos);
    CHECK(cols.find("token") == std::string::npos);
    CHECK(cols.find("email") != std::string::npos);
    CHECK(f.stop() == 0);
}

TEST_CASE("supabase: kills during the workload lose nothing", "[integration][supabase]") {
    SyncFixture f(supabase_options());
    call(f, "CALL supabase_seed(100, 0.31)");
    f.start();
    REQUIRE(f.wait_caught_up(std::chrono::seconds(60)));
    const int kills = run_with_kills(f, "CALL supabase_workload(0.41, 3000)", 4,
                                     std::chrono::milliseconds(500));
    CHECK(kills >= 1);
    require_in_sync(f);
    CHECK(f.stop() == 0);
}

TEST_CASE("supabase: an older Supabase without is_anonymous works, a missing column is named",
          "[integration][supabase]") {
    SyncFixture f(supabase_options());
    call(f, "ALTER TABLE auth.users DROP COLUMN is_anonymous");
    auto check = [&] {
        return run_shell_output(std::string(AUTHSYNC_EXE) + " check --config " + f.config_path() +
                                " 2>&1; echo \"rc=$?\"");
    };
    auto out = check();
    INFO(out);
    CHECK(out.find("all checks passed") != std::string::npos);
    call(f, "CALL supabase_seed(100, 0.51)");
    f.start();
    call(f, "CALL supabase_workload(0.52, 500)");
    require_in_sync(f, "users_without_is_anonymous");
    CHECK(f.stop() == 0);

    call(f, "ALTER TABLE auth.users DROP COLUMN email_confirmed_at CASCADE");
    out = check();
    INFO(out);
    CHECK(out.find("column \"email_confirmed_at\" of \"auth\".\"users\" (preset supabase) does "
                   "not exist") != std::string::npos);
    CHECK(out.find("rc=1") != std::string::npos);
}

TEST_CASE("supabase: check warns that row-level security would hide users from the copy",
          "[integration][supabase]") {
    SyncFixture f(supabase_options());
    // As on Supabase: RLS on auth.users with no policy, and a replication role that is not
    // its owner and cannot bypass it.
    f.provider().exec("ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY");
    f.provider().exec("DO $$ BEGIN CREATE ROLE supa_repl LOGIN REPLICATION; EXCEPTION WHEN "
                      "duplicate_object THEN NULL; END $$");
    f.provider().exec("GRANT USAGE ON SCHEMA auth TO supa_repl; GRANT SELECT ON auth.users TO "
                      "supa_repl");
    // The source DSN's user (the first DSN in the file).
    replace_in_config(f, "dbname=" + f.provider_db + " user=postgres",
                      "dbname=" + f.provider_db + " user=supa_repl");
    auto out = run_shell_output(std::string(AUTHSYNC_EXE) + " check --config " + f.config_path() +
                                " 2>&1; echo \"rc=$?\"");
    INFO(out);
    CHECK(out.find("\"auth\".\"users\" has row-level security, which hides its rows from this "
                   "role") != std::string::npos);
    CHECK(out.find("BYPASSRLS") != std::string::npos);
}

}  // namespace authsync::test
