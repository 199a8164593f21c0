#include "stack_support.hpp"

#include <catch2/catch.hpp>

#include "preset_support.hpp"

namespace authsync::test {

namespace {

constexpr const char* kTime = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

}  // namespace

std::map<std::string, std::string> target_queries() {
    const std::string t = kTime;
    return {
        {"users", "SELECT id, raw_json::text FROM neon_auth.users_sync WHERE deleted_at IS NULL"},
        {"teams",
         "SELECT id, display_name, profile_image_url, client_metadata::text, "
         "client_read_only_metadata::text, server_metadata::text, to_char(created_at AT TIME "
         "ZONE 'UTC', " +
             t + ") FROM neon_auth.teams_sync"},
        {"team_members",
         "SELECT team_id, user_id, display_name, is_selected::text, to_char(joined_at AT TIME "
         "ZONE 'UTC', " +
             t + ") FROM neon_auth.team_members_sync"},
        {"permissions",
         "SELECT id, user_id, team_id, permission_id, to_char(granted_at AT TIME ZONE 'UTC', " + t +
             ") FROM neon_auth.user_permissions_sync"},
    };
}

void require_target_matches(SyncFixture& f, const std::string& db, const std::string& tenancy,
                            PgCluster& cluster) {
    const auto refs = reference_queries("stack-auth");
    auto provider = f.provider();
    auto target = cluster.connect(db);
    for (const auto& [name, sql] : target_queries()) {
        require_same_rows("tenancy " + tenancy + " table " + name,
                          sorted_rows(provider.exec_params(refs.at(name), {tenancy})),
                          sorted_rows(target.exec(sql)));
    }
    for (const char* mirror : {"stack_project_user", "stack_contact_channel", "stack_team",
                               "stack_user_permission", "stack_team_member"}) {
        INFO(db << " " << mirror);
        auto r = target.exec_params(
            std::string("SELECT count(*) FROM authsync.") + mirror + " WHERE \"tenancyId\" <> $1",
            {tenancy});
        CHECK(r.get(0, 0) == "0");
    }
}

bool target_matches(SyncFixture& f, const std::string& db, const std::string& tenancy,
                    PgCluster& cluster) {
    const auto refs = reference_queries("stack-auth");
    auto provider = f.provider();
    auto target = cluster.connect(db);
    // A target whose sink has not provisioned it yet holds nothing.
    if (target.exec("SELECT to_regclass('neon_auth.user_permissions_sync') IS NULL").get(0, 0) ==
        "t") {
        return false;
    }
    for (const auto& [name, sql] : target_queries()) {
        if (sorted_rows(provider.exec_params(refs.at(name), {tenancy})) !=
            sorted_rows(target.exec(sql))) {
            return false;
        }
    }
    return true;
}

}  // namespace authsync::test
