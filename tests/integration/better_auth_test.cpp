// The better-auth preset against Better Auth's generated schema (tests/fixtures/better-auth):
// users, organizations, members and admin roles equal what reference.sql computes on the
// provider after a randomized workload, with kills in between, after an initial copy, and with
// a snake_case adapter's schema through the preset's rename options.
#include <catch2/catch.hpp>

#include <map>

#include "preset_support.hpp"
#include "sync_fixture.hpp"

namespace authsync::test {

namespace {

constexpr const char* kDir = "better-auth";

SyncOptions camel_options() {
    SyncOptions o;
    o.provider_ddl =
        read_preset_fixture(kDir, "schema.sql") + "\n" + read_preset_fixture(kDir, "workload.sql");
    o.mappings_yaml = "  - preset: better-auth\n";
    o.log_level = "info";
    return o;
}

SyncOptions snake_options() {
    SyncOptions o;
    o.provider_ddl = read_preset_fixture(kDir, "schema_snake.sql") + "\n" +
                     read_preset_fixture(kDir, "workload_snake.sql");
    o.mappings_yaml =
        "  - preset: better-auth\n"
        "    preset_options:\n"
        "      user_table: users\n"
        "      member_table: members\n"
        "      organization_table: organizations\n"
        "      email_verified: email_verified\n"
        "      created_at: created_at\n"
        "      ban_reason: ban_reason\n"
        "      ban_expires: ban_expires\n"
        "      organization_id: organization_id\n"
        "      user_id: user_id\n";
    o.log_level = "info";
    return o;
}

constexpr const char* kTime = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

std::map<std::string, std::string> target_queries() {
    const std::string t = kTime;
    return {
        {"users", "SELECT id, raw_json::text FROM neon_auth.users_sync WHERE deleted_at IS NULL"},
        {"teams",
         "SELECT id, display_name, profile_image_url, client_metadata::text, "
         "client_read_only_metadata::text, server_metadata #>> '{}', to_char(created_at AT "
         "TIME ZONE 'UTC', " +
             t + ") FROM neon_auth.teams_sync"},
        {"team_members",
         "SELECT team_id, user_id, display_name, role, is_selected::text, to_char(joined_at AT "
         "TIME ZONE 'UTC', " +
             t + ") FROM neon_auth.team_members_sync"},
        {"permissions",
         "SELECT id, user_id, team_id, permission_id, to_char(granted_at AT TIME ZONE 'UTC', " + t +
             ") FROM neon_auth.user_permissions_sync"},
    };
}

// `suffix`: "" for the camelCase schema's reference queries, "_snake" for the snake_case one's.
void require_in_sync(SyncFixture& f, const std::string& suffix) {
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    const auto refs = reference_queries(kDir);
    auto provider = f.provider();
    auto target = f.target();
    for (const auto& [name, sql] : target_queries()) {
        REQUIRE(refs.count(name + suffix) == 1);
        require_same_rows(
            "table " + name,
            sorted_rows(provider.exec_params(refs.at(name + suffix), {std::string("unused")})),
            sorted_rows(target.exec(sql)));
    }
}

void call(SyncFixture& f, const std::string& sql) {
    f.provider().exec(sql);
}

}  // namespace

TEST_CASE("better-auth: initial copy, then a randomized workload, equal the provider's own view",
          "[integration][better-auth]") {
    SyncFixture f(camel_options());
    call(f, "CALL better_auth_seed(200, 15, 0.11)");
    f.start();
    require_in_sync(f, "");
    call(f, "CALL better_auth_workload(0.21, 2000)");
    require_in_sync(f, "");
    // Passwords and tokens live in account and session, which are not even published.
    CHECK(f.provider_value("SELECT count(*) FROM pg_publication_tables WHERE pubname = "
                           "'authsync' AND tablename IN ('account', 'session', 'verification')") ==
          "0");
    CHECK(f.stop() == 0);
}

TEST_CASE("better-auth: kills during the workload lose nothing", "[integration][better-auth]") {
    SyncFixture f(camel_options());
    call(f, "CALL better_auth_seed(100, 10, 0.31)");
    f.start();
    REQUIRE(f.wait_caught_up(std::chrono::seconds(60)));
    const int kills = run_with_kills(f, "CALL better_auth_workload(0.41, 3000)", 4,
                                     std::chrono::milliseconds(500));
    CHECK(kills >= 1);
    require_in_sync(f, "");
    CHECK(f.stop() == 0);
}

TEST_CASE("better-auth: a snake_case adapter's tables through the rename options",
          "[integration][better-auth]") {
    SyncFixture f(snake_options());
    call(f, "CALL better_auth_seed_snake(150, 10, 0.51)");
    f.start();
    require_in_sync(f, "_snake");
    call(f, "CALL better_auth_workload_snake(0.52, 1500)");
    require_in_sync(f, "_snake");
    CHECK(f.stop() == 0);
}

}  // namespace authsync::test
