// The stack-auth preset against Stack Auth's schema (tests/fixtures/stack-auth/schema.sql):
// after catch-up, users_sync and the roles tables equal what reference.sql computes directly
// on the provider, for a randomized workload (workload.sql) with other tenancies' traffic,
// with kills in between, and after an initial copy of existing users.
#include <catch2/catch.hpp>

#include <csignal>
#include <map>
#include <thread>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "preset_support.hpp"
#include "stack_support.hpp"
#include "sync_fixture.hpp"

namespace authsync::test {

namespace {

// The project synced; the other tenancies' rows must never reach the target.
constexpr const char* kTenancy = "11111111-1111-4111-8111-111111111111";
constexpr const char* kOtherProject = "22222222-2222-4222-8222-222222222222";
constexpr const char* kOtherBranch = "33333333-3333-4333-8333-333333333333";

std::string read_fixture(const std::string& name) {
    return read_preset_fixture("stack-auth", name);
}

std::string provider_ddl() {
    return read_fixture("schema.sql") + "\n" + read_fixture("workload.sql") + "\n" +
           "INSERT INTO \"Tenancy\" (id, \"projectId\", \"branchId\") VALUES ('" + kTenancy +
           "', 'proj-a', 'main'), ('" + kOtherProject + "', 'proj-b', 'main'), ('" + kOtherBranch +
           "', 'proj-a', 'dev');\n";
}

SyncOptions stack_options() {
    SyncOptions o;
    o.provider_ddl = provider_ddl();
    o.mappings_yaml =
        "  - preset: stack-auth\n"
        "    preset_options:\n"
        "      project_id: proj-a\n";
    o.log_level = "info";
    return o;
}

// Compares every table; on a difference, names the first differing row (ids only).
void require_in_sync(SyncFixture& f) {
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    const auto refs = reference_queries("stack-auth");
    REQUIRE(refs.size() == 4);
    auto provider = f.provider();
    auto target = f.target();
    for (const auto& [name, sql] : target_queries()) {
        REQUIRE(refs.count(name) == 1);
        require_same_rows("table " + name,
                          sorted_rows(provider.exec_params(refs.at(name), {std::string(kTenancy)})),
                          sorted_rows(target.exec(sql)));
    }
    // Users deleted on the provider are soft-deleted, never gone or alive.
    auto live =
        provider.exec_params("SELECT count(*) FROM \"ProjectUser\" WHERE \"tenancyId\" = $1::uuid",
                             {std::string(kTenancy)});
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE deleted_at IS NULL") ==
          std::string(live.get(0, 0)));
}

void call(SyncFixture& f, const std::string& sql) {
    f.provider().exec(sql);
}

// counters.rows_applied of /status, by mapping or target ({} until it answers).
nlohmann::json rows_applied(SyncFixture& f) {
    return f.status()
        .value("counters", nlohmann::json::object())
        .value("rows_applied", nlohmann::json::object());
}

std::uint64_t count_of(const nlohmann::json& rows, const std::string& target, const char* op) {
    if (!rows.contains(target)) return 0;
    return rows[target].value(op, std::uint64_t{0});
}

}  // namespace

TEST_CASE("stack-auth: initial copy, then a randomized workload, equal the provider's own view",
          "[integration][stack-auth]") {
    SyncFixture f(stack_options());
    call(f, std::string("CALL stack_seed('") + kTenancy + "', 200, 0.11)");
    call(f, std::string("CALL stack_seed('") + kOtherProject + "', 50, 0.12)");
    f.start();
    require_in_sync(f);
    CHECK(std::stoi(f.target_value("SELECT count(*) FROM neon_auth.users_sync")) >= 200);

    call(f, std::string("CALL stack_workload('") + kTenancy + "', '" + kOtherProject +
                "', 0.21, 1500)");
    require_in_sync(f);
    call(f, std::string("CALL stack_workload('") + kTenancy + "', '" + kOtherBranch +
                "', 0.22, 1500)");
    require_in_sync(f);
    // Secrets never leave the provider; other tenancies' rows are not even sent.
    auto pub = f.provider().exec(
        "SELECT tablename, array_to_string(attnames, ','), rowfilter IS NOT NULL "
        "FROM pg_publication_tables WHERE pubname = 'authsync'");
    REQUIRE(pub.rows() == 10);
    for (int i = 0; i < pub.rows(); ++i) {
        const std::string table(pub.get(i, 0));
        INFO(table);
        CHECK(std::string(pub.get(i, 1)).find("passwordHash") == std::string::npos);
        CHECK(std::string(pub.get(i, 1)).find("totpSecret") == std::string::npos);
        // Keyed by "id" alone (as in Stack), the permission tables cannot take a row filter
        // on "tenancyId" without breaking the provider's deletes: published unfiltered, scoped
        // by the preset (the workload's revocations would have failed otherwise).
        const bool keyed_by_id = table.find("DirectPermission") != std::string::npos;
        CHECK(pub.get(i, 2) == (keyed_by_id ? "f" : "t"));
    }
    CHECK_THAT(f.process().log(), Catch::Contains("\"public\".\"ProjectUserDirectPermission\" is "
                                                  "published without its row filter"));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.team_members_sync WHERE role IS NOT "
                         "NULL") == "0");  // Stack has permissions, not member roles
    // Published unfiltered, other projects' grants are dropped as they arrive.
    CHECK(f.target_value("SELECT count(*) FROM authsync.stack_user_permission WHERE "
                         "\"tenancyId\" <> '" +
                         std::string(kTenancy) + "'") == "0");
    CHECK(std::stoi(f.provider_value("SELECT count(*) FROM \"ProjectUserDirectPermission\" "
                                     "WHERE \"tenancyId\" <> '" +
                                     std::string(kTenancy) + "'")) > 0);
    CHECK(
        f.target_value("SELECT count(*) FROM authsync.stack_project_user WHERE \"tenancyId\" <> '" +
                       std::string(kTenancy) + "'") == "0");
    CHECK(f.stop() == 0);
}

TEST_CASE("stack-auth: kills during the workload lose nothing and apply nothing twice",
          "[integration][stack-auth]") {
    SyncFixture f(stack_options());
    call(f, std::string("CALL stack_seed('") + kTenancy + "', 100, 0.31)");
    f.start();
    REQUIRE(f.wait_caught_up(std::chrono::seconds(60)));

    const int kills = run_with_kills(
        f,
        std::string("CALL stack_workload('") + kTenancy + "', '" + kOtherProject + "', 0.41, 3000)",
        4, std::chrono::milliseconds(700));
    INFO(kills << " kills");
    CHECK(kills >= 1);
    require_in_sync(f);
    CHECK(f.stop() == 0);
}

TEST_CASE("stack-auth: revoking a permission or deleting a user shows in the same target commit",
          "[integration][stack-auth]") {
    SyncFixture f(stack_options());
    call(f, std::string("CALL stack_seed('") + kTenancy + "', 30, 0.51)");
    f.start();
    require_in_sync(f);
    auto p = f.provider();
    auto victim = p.exec_params(
        "SELECT \"projectUserId\"::text FROM \"ProjectUserDirectPermission\" WHERE \"tenancyId\" "
        "= $1::uuid LIMIT 1",
        {std::string(kTenancy)});
    REQUIRE(victim.rows() == 1);
    const std::string user(victim.get(0, 0));
    p.exec_params("DELETE FROM \"ProjectUserDirectPermission\" WHERE \"projectUserId\" = $1::uuid",
                  {user});
    require_in_sync(f);
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.user_permissions_sync WHERE user_id = '" +
                         user + "' AND team_id IS NULL") == "0");

    p.exec_params("DELETE FROM \"ProjectUser\" WHERE \"projectUserId\" = $1::uuid", {user});
    require_in_sync(f);
    CHECK(f.target_value("SELECT deleted_at IS NOT NULL FROM neon_auth.users_sync WHERE id = '" +
                         user + "'") == "t");
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.user_permissions_sync WHERE user_id = '" +
                         user + "'") == "0");
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.team_members_sync WHERE user_id = '" +
                         user + "'") == "0");
    CHECK(f.stop() == 0);
}

TEST_CASE(
    "stack-auth: removed users and memberships count as deletes of their targets, not upserts",
    "[integration][stack-auth]") {
    SyncFixture f(stack_options());
    call(f, std::string("CALL stack_seed('") + kTenancy + "', 40, 0.55)");
    f.start();
    require_in_sync(f);
    auto p = f.provider();
    const std::string tenancy(kTenancy);
    // A membership that is not the user's selected team (so the user's raw_json stays), and
    // another user to delete with everything it has.
    auto member = p.exec_params(
        "SELECT \"projectUserId\"::text, \"teamId\"::text FROM \"TeamMember\" WHERE "
        "\"tenancyId\" = $1::uuid AND \"isSelected\" IS NULL ORDER BY 1, 2 LIMIT 1",
        {tenancy});
    REQUIRE(member.rows() == 1);
    const std::string member_user(member.get(0, 0)), member_team(member.get(0, 1));
    auto victim = p.exec_params(
        "SELECT \"projectUserId\"::text FROM \"TeamMember\" WHERE \"tenancyId\" = $1::uuid "
        "AND \"projectUserId\" <> $2::uuid ORDER BY 1 LIMIT 1",
        {tenancy, member_user});
    REQUIRE(victim.rows() == 1);
    const std::string user(victim.get(0, 0));
    const auto victim_memberships = std::stoull(f.target_value(
        "SELECT count(*) FROM neon_auth.team_members_sync WHERE user_id = '" + user + "'"));
    REQUIRE(victim_memberships >= 1);

    const auto before = rows_applied(f);
    p.exec_params(
        "DELETE FROM \"TeamMember\" WHERE \"tenancyId\" = $1::uuid AND "
        "\"projectUserId\" = $2::uuid AND \"teamId\" = $3::uuid",
        {tenancy, member_user, member_team});
    p.exec_params(
        "DELETE FROM \"ProjectUser\" WHERE \"tenancyId\" = $1::uuid AND "
        "\"projectUserId\" = $2::uuid",
        {tenancy, user});
    require_in_sync(f);
    const char* users = "neon_auth.users_sync";
    const char* members = "neon_auth.team_members_sync";
    // The counters are published with the status snapshot, after the commit.
    CHECK(wait_until([&] {
        const auto now = rows_applied(f);
        return count_of(now, users, "deletes") > count_of(before, users, "deletes") &&
               count_of(now, members, "deletes") > count_of(before, members, "deletes");
    }));
    const auto after = rows_applied(f);
    INFO(before.dump() << " -> " << after.dump());
    // One user soft-deleted; the user's memberships and the other one removed.
    CHECK(count_of(after, users, "deletes") - count_of(before, users, "deletes") == 1);
    CHECK(count_of(after, members, "deletes") - count_of(before, members, "deletes") ==
          victim_memberships + 1);
    // Nothing was written as an upsert: the kept user's raw_json did not change.
    CHECK(count_of(after, users, "upserts") == count_of(before, users, "upserts"));
    CHECK(count_of(after, members, "upserts") == count_of(before, members, "upserts"));
    CHECK(f.stop() == 0);
}

TEST_CASE("stack-auth: check names a missing column, and a project without a tenancy",
          "[integration][stack-auth]") {
    SyncFixture f(stack_options());
    auto check = [&] {
        return run_shell_output(std::string(AUTHSYNC_EXE) + " check --config " + f.config_path() +
                                " 2>&1; echo \"rc=$?\"");
    };
    auto out = check();
    INFO(out);
    CHECK(out.find("all checks passed") != std::string::npos);

    f.provider().exec("ALTER TABLE \"ContactChannel\" DROP COLUMN \"isVerified\"");
    out = check();
    INFO(out);
    CHECK(out.find("column \"isVerified\" of \"public\".\"ContactChannel\" (preset stack-auth) "
                   "does not exist") != std::string::npos);
    CHECK(out.find("rc=1") != std::string::npos);

    f.provider().exec(
        "DELETE FROM \"Tenancy\" WHERE \"projectId\" = 'proj-a' AND \"branchId\" = 'main'");
    out = check();
    INFO(out);
    CHECK(out.find("lookup tenancy_id found 0 rows") != std::string::npos);
}

TEST_CASE("stack-auth: run stops for good on a project without a tenancy",
          "[integration][stack-auth]") {
    SyncFixture f(stack_options());
    f.provider().exec(
        "DELETE FROM \"Tenancy\" WHERE \"projectId\" = 'proj-a' AND \"branchId\" = 'main'");
    // Reconnecting would find the same: exit 1 at once, naming the lookup, not a retry loop.
    f.start_unchecked();
    const int rc = f.process().wait(std::chrono::seconds(30));
    const auto log = f.process().log();
    INFO(log);
    CHECK(rc == 1);
    CHECK(log.find("lookup tenancy_id found 0 rows") != std::string::npos);
    CHECK(log.find("reconnecting") == std::string::npos);
}

TEST_CASE("stack-auth: resync copies the mirrors again and reconciles what changed meanwhile",
          "[integration][stack-auth]") {
    SyncFixture f(stack_options());
    call(f, std::string("CALL stack_seed('") + kTenancy + "', 80, 0.61)");
    f.start();
    require_in_sync(f);
    REQUIRE(f.stop() == 0);

    // While authsync is away: deletions (users, grants, teams) and everything else.
    call(f, std::string("CALL stack_workload('") + kTenancy + "', '" + kOtherProject +
                "', 0.62, 600)");
    auto resync = run_shell_output(std::string(AUTHSYNC_EXE) + " resync --config " +
                                   f.config_path() + " 2>&1; echo rc=$?");
    INFO(resync);
    CHECK(resync.find("rc=0") != std::string::npos);
    f.start();
    require_in_sync(f);
    CHECK(f.stop() == 0);
}

TEST_CASE("stack-auth: a lost mirror or another project's publication stops authsync with advice",
          "[integration][stack-auth]") {
    SyncFixture f(stack_options());
    call(f, std::string("CALL stack_seed('") + kTenancy + "', 20, 0.71)");
    f.start();
    require_in_sync(f);
    REQUIRE(f.stop() == 0);

    // An empty mirror would soft-delete the users it holds at their next change.
    f.target().exec("DROP TABLE authsync.stack_contact_channel");
    f.start_unchecked();
    CHECK(f.process().wait(std::chrono::seconds(30)) == 1);
    CHECK_THAT(f.process().log(),
               Catch::Contains("mirror authsync.stack_contact_channel of preset stack-auth does "
                               "not exist: the mirrors must be copied from the provider again; "
                               "run `authsync resync`"));
    auto resync = run_shell_output(std::string(AUTHSYNC_EXE) + " resync --config " +
                                   f.config_path() + " 2>&1; echo rc=$?");
    INFO(resync);
    CHECK(resync.find("rc=0") != std::string::npos);
    f.start();
    call(f, std::string("CALL stack_workload('") + kTenancy + "', '" + kOtherProject +
                "', 0.72, 200)");
    require_in_sync(f);
    REQUIRE(f.stop() == 0);

    // A publication made for another project would stream the wrong users.
    f.provider().exec("DROP PUBLICATION authsync");
    f.provider().exec(std::string("CREATE PUBLICATION authsync FOR TABLE \"ProjectUser\" WHERE "
                                  "(\"tenancyId\" = '") +
                      kOtherProject +
                      "'), \"ContactChannel\", "
                      "\"PasswordAuthMethod\", \"OtpAuthMethod\", \"PasskeyAuthMethod\", "
                      "\"ProjectUserOAuthAccount\", \"Team\", \"TeamMember\", "
                      "\"ProjectUserDirectPermission\", \"TeamMemberDirectPermission\"");
    f.start_unchecked();
    CHECK(f.process().wait(std::chrono::seconds(30)) == 1);
    CHECK_THAT(f.process().log(),
               Catch::Contains("has a row filter without tenancy_id " + std::string(kTenancy) +
                               " on \"public\".\"ProjectUser\""));
}

}  // namespace authsync::test

namespace authsync::test {

TEST_CASE("stack-auth fan-out: three projects from one slot, each in its own database",
          "[integration][stack-auth][fanout]") {
    // proj-a main, proj-b main, proj-a dev: three tenancies, three target databases.
    const std::vector<std::pair<std::string, std::string>> targets{
        {kTenancy, "project_id: proj-a"},
        {kOtherProject, "project_id: proj-b"},
        {kOtherBranch, "project_id: proj-a, branch: dev"}};
    std::vector<std::string> dbs;
    SyncOptions o = stack_options();
    o.mappings_yaml.clear();
    for (std::size_t i = 0; i < targets.size(); ++i) {
        dbs.push_back(target_cluster().create_database("stack"));
        o.targets_yaml +=
            "  - name: t" + std::to_string(i) + "\n    dsn: \"" + target_cluster().dsn(dbs.back()) +
            "\"\n    mappings:\n      - preset: stack-auth\n        preset_options: {" +
            targets[i].second + "}\n";
    }
    SyncFixture f(o);
    call(f, std::string("CALL stack_seed('") + kTenancy + "', 60, 0.61)");
    call(f, std::string("CALL stack_seed('") + kOtherProject + "', 40, 0.62)");
    call(f, std::string("CALL stack_seed('") + kOtherBranch + "', 30, 0.63)");
    f.start();
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    for (std::size_t i = 0; i < targets.size(); ++i) {
        require_target_matches(f, dbs[i], targets[i].first);
    }
    // Each project's traffic with another's beside it, with kills in between.
    int kills = 0;
    for (std::size_t i = 0; i < targets.size(); ++i) {
        const auto& other = targets[(i + 1) % targets.size()].first;
        kills += run_with_kills(f,
                                "CALL stack_workload('" + targets[i].first + "', '" + other +
                                    "', 0.7" + std::to_string(i) + ", 800)",
                                1, std::chrono::milliseconds(900));
    }
    INFO(kills << " kills");
    CHECK(kills >= 1);
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    for (std::size_t i = 0; i < targets.size(); ++i) {
        require_target_matches(f, dbs[i], targets[i].first);
    }
    // One publication for the three: the filtered tables carry the three tenancies' filters.
    auto pub = f.provider().exec(
        "SELECT tablename, coalesce(rowfilter, '') FROM pg_publication_tables WHERE pubname = "
        "'authsync'");
    REQUIRE(pub.rows() == 10);
    for (int i = 0; i < pub.rows(); ++i) {
        const std::string table(pub.get(i, 0));
        const std::string filter(pub.get(i, 1));
        INFO(table << ": " << filter);
        if (table.find("DirectPermission") != std::string::npos) continue;  // unfiltered
        for (const auto& [tenancy, options] : targets)
            CHECK(filter.find(tenancy) != std::string::npos);
    }
    CHECK(f.stop() == 0);
}

}  // namespace authsync::test

namespace authsync::test {

// Issue 16's whole story on Stack's schema: 20 projects, each in its own database on one of two
// target servers, fed from one slot, through SIGKILLs, an outage of one server (its targets
// detach, the others stream on, then they re-attach with a copy), and a target added and
// another removed mid-stream (the others never detach meanwhile).
TEST_CASE(
    "stack-auth fan-out: 20 projects on two servers through kills, an outage, an add and a "
    "removal",
    "[integration][stack-auth][fanout][large]") {
    PgCluster second("stack2");
    constexpr int kProjects = 20;  // t0..t18 at first; t19 added and t18 removed later
    auto tenancy = [](int i) { return fmt::format("00000000-0000-4000-8000-{:012d}", i); };
    // t19 is project p18's new database (t18 is removed): the publication's row filters were
    // made for the first 19 projects, and a new project needs a new publication (OPERATIONS).
    auto project = [](int i) { return i == 19 ? 18 : i; };
    std::string ddl = read_fixture("schema.sql") + "\n" + read_fixture("workload.sql") +
                      "\nINSERT INTO \"Tenancy\" (id, \"projectId\", \"branchId\") VALUES ";
    for (int i = 0; i < kProjects; ++i) {
        ddl += fmt::format("{}('{}', 'p{}', 'main')", i ? ", " : "", tenancy(i), i);
    }
    ddl += ";\n";
    std::vector<std::pair<PgCluster*, std::string>> dbs;
    std::vector<std::string> entries;
    SyncOptions o;
    o.provider_ddl = ddl;
    o.log_level = "info";
    o.extra_yaml = "fanout:\n  max_target_lag: {seconds: 3}\n";
    for (int i = 0; i < kProjects; ++i) {
        auto* cluster = i % 2 ? &second : &target_cluster();
        dbs.emplace_back(cluster, cluster->create_database("stack"));
        entries.push_back(fmt::format(
            "  - name: t{}\n    dsn: \"{}\"\n    mappings:\n      - preset: stack-auth\n"
            "        preset_options: {{project_id: p{}}}\n",
            i, cluster->dsn(dbs.back().second), project(i)));
        if (i < kProjects - 1) o.targets_yaml += entries.back();
    }
    SyncFixture f(o);
    for (int i = 0; i < kProjects - 1; ++i) {
        call(f, fmt::format("CALL stack_seed('{}', 6, 0.{})", tenancy(i), 10 + i));
    }
    auto workload = [&](int a, int b, int seed, int ops) {
        return fmt::format("CALL stack_workload('{}', '{}', 0.{}, {})", tenancy(a), tenancy(b),
                           seed, ops);
    };
    auto matches = [&](const std::vector<int>& which) {
        for (int i : which) {
            INFO("t" << i);
            require_target_matches(f, dbs[i].second, tenancy(project(i)), *dbs[i].first);
        }
    };
    auto range = [](int from, int to, int step = 1) {
        std::vector<int> out;
        for (int i = from; i < to; i += step) out.push_back(i);
        return out;
    };
    auto state = [&](int i) {
        auto s = f.status();
        const auto name = "t" + std::to_string(i);
        if (!s.contains("targets") || !s["targets"].contains(name)) return std::string();
        return s["targets"][name].value("state", std::string());
    };
    auto all_in = [&](const std::vector<int>& which, const std::string& wanted) {
        return std::all_of(which.begin(), which.end(), [&](int i) { return state(i) == wanted; });
    };
    f.start();
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    matches(range(0, 19));

    // SIGKILLs during three projects' traffic, each with another project's beside it.
    int kills = 0;
    for (int i : {0, 1, 2}) {
        kills +=
            run_with_kills(f, workload(i, i + 10, 50 + i, 200), 1, std::chrono::milliseconds(700));
    }
    CHECK(kills >= 1);
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));

    // The second server stops: its targets detach after fanout.max_target_lag, and the slot
    // moves on with the others.
    const auto odd = range(1, 19, 2);
    const auto even = range(0, 19, 2);
    second.stop("immediate");
    call(f, workload(4, 5, 61, 150));
    REQUIRE(wait_until([&] { return all_in(odd, "detached"); }, std::chrono::seconds(60)));
    call(f, workload(6, 7, 62, 150));
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    matches(even);
    // Back: they re-attach, each copied again, and catch up.
    second.start();
    REQUIRE(
        wait_until([&] { return all_in(range(0, 19), "streaming"); }, std::chrono::seconds(120)));
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    matches(range(0, 19));

    // t19 added and t18 removed by a reload while projects write; nobody detaches meanwhile.
    const auto mark = f.process().log().size();
    replace_in_config(f, entries[18], entries[19]);
    std::thread traffic([&] { f.provider().exec(workload(8, 18, 63, 200)); });
    f.process().signal(SIGHUP);
    traffic.join();
    REQUIRE(wait_until([&] { return state(19) == "streaming" && state(18).empty(); },
                       std::chrono::seconds(120)));
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    const auto since = f.process().log().substr(mark);
    CHECK(since.find("detached") == std::string::npos);
    CHECK(since.find("target t19 copied; it joins the stream") != std::string::npos);

    // More kills, the new target's project among the writers.
    kills += run_with_kills(f, workload(18, 3, 64, 200), 1, std::chrono::milliseconds(700));
    REQUIRE(f.wait_caught_up(std::chrono::seconds(120)));
    auto attached = range(0, 18);
    attached.push_back(19);
    matches(attached);
    INFO(kills << " kills");
    CHECK(f.stop() == 0);
}

}  // namespace authsync::test
