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
    // A soft-deleted user still exists on the provider: it is here, soft-deleted when Supabase
    // did it.
    const auto soft_deleted =
        sorted_rows(f.provider().exec_params(refs.at("soft_deleted"), {std::string("unused")}));
    Rows held;
    for (const auto& row : soft_deleted) {
        auto r = f.target().exec_params(
            "SELECT id, to_char(deleted_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
            "FROM neon_auth.users_sync WHERE id = $1",
            {row.at(0)});
        for (const auto& r_row : sorted_rows(r)) held.push_back(r_row);
    }
    require_same_rows("soft-deleted users", soft_deleted, held);
}

std::string target_deleted_at(SyncFixture& f, const std::string& id) {
    return f.target_value(
        "SELECT to_char(deleted_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.US') FROM neon_auth.users_sync WHERE id = '" +
        id + "'");
}

void call(SyncFixture& f, const std::string& sql) {
    f.provider().exec(sql);
}

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

TEST_CASE(
    "supabase: a user soft-deleted before the initial copy is copied soft-deleted, and "
    "stays so when it is deleted",
    "[integration][supabase]") {
    SyncFixture f(supabase_options());
    call(f, "CALL supabase_seed(30, 0.15)");
    const auto id = f.provider_value(
        "SELECT id::text FROM auth.users WHERE deleted_at IS NULL "
        "ORDER BY id LIMIT 1");
    f.provider().exec_params(
        "SELECT supabase_soft_delete($1::uuid, '2024-05-06 "
        "07:08:09.123456+00')",
        {id});
    f.start();
    require_in_sync(f);
    CHECK(target_deleted_at(f, id) == "2024-05-06T07:08:09.123456");
    CHECK(f.target_value("SELECT raw_json ->> 'id' FROM neon_auth.users_sync WHERE id = '" + id +
                         "'") == id);

    // GoTrue's hard delete of a soft-deleted user: it stays soft-deleted, as it was.
    f.provider().exec_params("DELETE FROM auth.users WHERE id = $1::uuid", {id});
    require_in_sync(f);
    CHECK(target_deleted_at(f, id) == "2024-05-06T07:08:09.123456");
    CHECK(f.stop() == 0);
}

TEST_CASE(
    "supabase: a user inserted soft-deleted while streaming is held soft-deleted, then "
    "deleted",
    "[integration][supabase]") {
    SyncFixture f(supabase_options());
    call(f, "CALL supabase_seed(20, 0.16)");
    f.start();
    require_in_sync(f);
    const std::string id = "0bad0000-0000-4000-8000-000000000001";
    f.provider().exec_params(
        "INSERT INTO auth.users (id, aud, role, email, raw_user_meta_data, raw_app_meta_data, "
        "created_at, updated_at, deleted_at) VALUES ($1::uuid, 'authenticated', "
        "'authenticated', 'gone@example.com', '{}', '{}', '2024-01-01 00:00:00+00', "
        "'2024-02-03 04:05:06.654321+00', '2024-02-03 04:05:06.654321+00')",
        {id});
    require_in_sync(f);
    CHECK(target_deleted_at(f, id) == "2024-02-03T04:05:06.654321");
    f.provider().exec_params("DELETE FROM auth.users WHERE id = $1::uuid", {id});
    require_in_sync(f);
    CHECK(target_deleted_at(f, id) == "2024-02-03T04:05:06.654321");
    CHECK(f.stop() == 0);
}

TEST_CASE("supabase: banned_until keeps the provider's microseconds, as GoTrue writes it",
          "[integration][supabase]") {
    SyncFixture f(supabase_options());
    call(f, "CALL supabase_seed(20, 0.17)");
    f.start();
    require_in_sync(f);
    const auto ids = sorted_rows(f.provider().exec(
        "SELECT id::text FROM auth.users WHERE deleted_at IS NULL ORDER BY id LIMIT 3"));
    REQUIRE(ids.size() == 3);
    const std::pair<const char*, const char*> bans[] = {
        {"2030-01-02 03:04:05.123456+00", "2030-01-02T03:04:05.123456Z"},
        {"2030-01-02 03:04:05.1+00", "2030-01-02T03:04:05.1Z"},
        {"2030-01-02 03:04:00+00", "2030-01-02T03:04:00Z"},
    };
    for (std::size_t i = 0; i < 3; ++i) {
        f.provider().exec_params(
            "UPDATE auth.users SET banned_until = $2::timestamptz WHERE id = "
            "$1::uuid",
            {ids[i][0], bans[i].first});
    }
    require_in_sync(f);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(f.target_value("SELECT raw_json ->> 'banned_until' FROM neon_auth.users_sync WHERE "
                             "id = '" +
                             ids[i][0] + "'") == bans[i].second);
    }
    CHECK(f.stop() == 0);
}

TEST_CASE("supabase: kills during the workload lose nothing", "[integration][supabase]") {
    SyncFixture f(supabase_options());
    call(f, "CALL supabase_seed(100, 0.31)");
    f.start();
    REQUIRE(f.wait_caught_up(std::chrono::seconds(60)));
    const int kills =
        run_with_kills(f, "CALL supabase_workload(0.41, 3000)", 4, std::chrono::milliseconds(500));
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
    f.provider().exec(
        "DO $$ BEGIN CREATE ROLE supa_repl LOGIN REPLICATION; EXCEPTION WHEN "
        "duplicate_object THEN NULL; END $$");
    f.provider().exec(
        "GRANT USAGE ON SCHEMA auth TO supa_repl; GRANT SELECT ON auth.users TO "
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
