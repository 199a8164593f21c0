// The keycloak preset against Keycloak's tables (tests/fixtures/keycloak): one realm's users
// and roles equal what reference.sql computes on the provider after a randomized workload
// with another realm's traffic, with kills in between and after an initial copy.
#include <catch2/catch.hpp>

#include <map>

#include "preset_support.hpp"
#include "sync_fixture.hpp"

namespace authsync::test {

namespace {

constexpr const char* kDir = "keycloak";

SyncOptions keycloak_options() {
    SyncOptions o;
    o.provider_ddl =
        read_preset_fixture(kDir, "schema.sql") + "\n" + read_preset_fixture(kDir, "workload.sql");
    o.mappings_yaml = "  - preset: keycloak\n    preset_options: {realm: acme}\n";
    o.log_level = "info";
    return o;
}

void require_in_sync(SyncFixture& f) {
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    const auto refs = reference_queries(kDir);
    const std::map<std::string, std::string> target{
        {"users", "SELECT id, raw_json::text FROM neon_auth.users_sync WHERE deleted_at IS NULL"},
        {"permissions",
         "SELECT id, user_id, team_id, permission_id, granted_at::text FROM "
         "neon_auth.user_permissions_sync"},
    };
    for (const auto& [name, sql] : target) {
        REQUIRE(refs.count(name) == 1);
        require_same_rows(
            "table " + name,
            sorted_rows(f.provider().exec_params(refs.at(name), {std::string("acme")})),
            sorted_rows(f.target().exec(sql)));
    }
}

void call(SyncFixture& f, const std::string& sql) {
    f.provider().exec(sql);
}

}  // namespace

TEST_CASE("keycloak: initial copy, then a randomized workload, equal the provider's own view",
          "[integration][keycloak]") {
    SyncFixture f(keycloak_options());
    call(f, "CALL keycloak_seed('acme', 200, 0.11)");
    call(f, "CALL keycloak_seed('other', 50, 0.12)");
    f.start();
    require_in_sync(f);
    call(f, "CALL keycloak_workload('acme', 'other', 0.21, 2000)");
    require_in_sync(f);
    // The other realm's users crossed the wire (user_entity cannot be filtered by realm at the
    // provider) but were never stored.
    CHECK(f.target_value("SELECT count(DISTINCT realm_id) FROM authsync.keycloak_user") == "1");
    CHECK_THAT(f.process().log(), Catch::Contains("\"public\".\"user_entity\" is published "
                                                  "without its row filter"));
    CHECK(f.stop() == 0);
}

TEST_CASE("keycloak: kills during the workload lose nothing", "[integration][keycloak]") {
    SyncFixture f(keycloak_options());
    call(f, "CALL keycloak_seed('acme', 100, 0.31)");
    call(f, "CALL keycloak_seed('other', 30, 0.32)");
    f.start();
    REQUIRE(f.wait_caught_up(std::chrono::seconds(60)));
    const int kills = run_with_kills(f, "CALL keycloak_workload('acme', 'other', 0.41, 3000)", 4,
                                     std::chrono::milliseconds(500));
    CHECK(kills >= 1);
    require_in_sync(f);
    CHECK(f.stop() == 0);
}

TEST_CASE("keycloak: an unknown realm is named by check and stops run", "[integration][keycloak]") {
    auto o = keycloak_options();
    o.mappings_yaml = "  - preset: keycloak\n    preset_options: {realm: nosuch}\n";
    SyncFixture f(o);
    auto out = run_shell_output(std::string(AUTHSYNC_EXE) + " check --config " + f.config_path() +
                                " 2>&1; echo \"rc=$?\"");
    INFO(out);
    CHECK(out.find("lookup realm_id found 0 rows") != std::string::npos);
    f.start_unchecked();
    CHECK(f.process().wait(std::chrono::seconds(30)) == 1);
    CHECK_THAT(f.process().log(), Catch::Contains("lookup realm_id found 0 rows"));
}

TEST_CASE("keycloak: another realm in the config asks for resync, which switches the users",
          "[integration][keycloak]") {
    SyncFixture f(keycloak_options());
    call(f, "CALL keycloak_seed('acme', 40, 0.61)");
    call(f, "CALL keycloak_seed('other', 30, 0.62)");
    f.start();
    require_in_sync(f);
    REQUIRE(f.stop() == 0);

    replace_in_config(f, "realm: acme", "realm: other");
    f.start_unchecked();
    CHECK(f.process().wait(std::chrono::seconds(30)) == 1);
    CHECK_THAT(f.process().log(), Catch::Contains("realm=acme") && Catch::Contains("realm=other") &&
                                      Catch::Contains("run `authsync resync`"));

    auto resync = run_shell_output(std::string(AUTHSYNC_EXE) + " resync --config " +
                                   f.config_path() + " 2>&1; echo rc=$?");
    INFO(resync);
    CHECK(resync.find("rc=0") != std::string::npos);
    // acme's users are soft-deleted, other's are live.
    require_same_rows(
        "users_sync",
        sorted_rows(
            f.provider().exec_params(reference_queries(kDir).at("users"), {std::string("other")})),
        sorted_rows(f.target().exec(
            "SELECT id, raw_json::text FROM neon_auth.users_sync WHERE deleted_at IS NULL")));
}

}  // namespace authsync::test
