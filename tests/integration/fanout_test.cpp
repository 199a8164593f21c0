// Fan-out (targets:): one slot, one decode, several target databases, each with its own
// mappings, scope and checkpoint.
#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "fanout_support.hpp"
#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using test::SyncFixture;
using test::wait_until;

namespace {

using namespace test::fanout;

// The state /status shows for target `t` ("" while the endpoint does not answer).
std::string target_state(SyncFixture& f, int t) {
    auto s = f.status();
    if (!s.contains("targets") || !s["targets"].contains(tenant(t))) return "";
    return s["targets"][tenant(t)].value("state", "");
}

}  // namespace

TEST_CASE("fan-out: each target gets its own tenant's users from one slot",
          "[fanout][integration]") {
    auto targets = make_targets("hard");
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    SyncFixture f(options);
    auto p = f.provider();
    // Before the first start: the initial copy gives each target its tenant's rows.
    p.exec(
        "INSERT INTO public.users (id, tenant, name, email) SELECT 'u' || i, 'tenant' || (i % 3), "
        "'name ' || i, 'u' || i || '@example.com' FROM generate_series(1, 30) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    for (int t = 0; t < kTenants; ++t) CHECK(target_rows(targets.databases[t]).size() == 10);

    // Streamed: inserts, updates, deletes, and a user moved to another tenant.
    p.exec("INSERT INTO public.users (id, tenant, name) VALUES ('n1', 'tenant0', 'new one')");
    p.exec("UPDATE public.users SET name = 'renamed', version = version + 1 WHERE id = 'u3'");
    p.exec("DELETE FROM public.users WHERE id = 'u4'");
    p.exec("UPDATE public.users SET tenant = 'tenant2', version = version + 1 WHERE id = 'u1'");
    p.exec("INSERT INTO public.unrelated (note) VALUES ('nobody maps this')");
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    // The moved user left tenant1's database and is in tenant2's; no target holds any row of
    // another tenant, deleted or not (on_delete: hard).
    CHECK(all_ids(targets.databases[1]).count("u1") == 0);
    CHECK(target_rows(targets.databases[2]).count("u1") == 1);
    check_no_foreign_rows(f, targets);
    // Each target has its own checkpoint, and the slot is acknowledged once all hold it.
    REQUIRE(f.wait_caught_up());
    for (const auto& db : targets.databases) {
        auto r = db.connect().exec_params(
            "SELECT count(*) FROM authsync.checkpoint WHERE slot = $1", pg::params(f.slot()));
        CHECK(r.get(0, 0) == "1");
    }
    auto s = f.status();
    CHECK(s["state"] == "streaming");
    // Per target: its state, what it holds, its own rows.
    REQUIRE(s["targets"].size() == kTenants);
    for (int t = 0; t < kTenants; ++t) CHECK(s["targets"][tenant(t)]["state"] == "streaming");
    auto rows = [&](int t, const char* op) {
        return s["targets"][tenant(t)]["rows_applied"]["public.users"][op].get<int>();
    };
    CHECK(rows(0, "upserts") == 2);  // n1, u3
    CHECK(rows(1, "upserts") == 0);
    CHECK(rows(2, "upserts") == 1);  // u1, moved in
    // Removals: tenant1's u4 and u1 (moved out), and u3 (renamed in tenant0): with the tenant
    // outside the replica identity, an UPDATE out of a target's scope, or a DELETE, removes the
    // key in every target that maps the table (a no-op where it is absent).
    CHECK(rows(1, "deletes") == 3);
    CHECK(rows(0, "deletes") == 2);  // u4, u1
    CHECK(rows(2, "deletes") == 2);  // u4, u3
    CHECK(f.stop() == 0);
}

TEST_CASE("fan-out: targets stay equal to their tenants through SIGKILLs",
          "[fanout][integration]") {
    auto targets = make_targets("hard");
    SyncFixture f(tenant_options(targets, "apply:\n  batch_max_rows: 50\n"));
    seed_users(f, kTenants);
    f.start();
    Workload work(f, kTenants, 20261204);
    for (int round = 0; round < 3; ++round) {
        // Every statement its own transaction, and a few larger ones.
        work.run(150, [&](int i) {
            if (i == 75 && round < 2) {
                // Mid-stream: whatever was in flight is lost with the process, and comes
                // again from the slot.
                f.kill9();
                f.start();
            }
        });
    }
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 60s));
    check_no_foreign_rows(f, targets);
    REQUIRE(f.wait_caught_up());
    CHECK(f.stop() == 0);
}

TEST_CASE("fan-out: a target added to a streaming slot gets its own copy and joins the stream",
          "[fanout][integration]") {
    auto targets = make_targets("hard");
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    // The first start knows two of the three targets.
    const auto second = targets.yaml.find("  - name: " + tenant(2));
    options.targets_yaml = targets.yaml.substr(0, second);
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 3), "
        "'name ' || i FROM generate_series(1, 30) AS i");
    f.start();
    auto first_two = [&] {
        return provider_rows(f, 0) == target_rows(targets.databases[0]) &&
               provider_rows(f, 1) == target_rows(targets.databases[1]);
    };
    REQUIRE(wait_until(first_two, 30s));
    // Changes of every tenant while the first two stream, and while nothing runs: the slot
    // holds them past the two targets' checkpoints.
    p.exec(
        "UPDATE public.users SET version = version + 1, name = 'streamed' WHERE id IN "
        "('u1', 'u2', 'u3')");
    REQUIRE(wait_until(first_two, 30s));
    REQUIRE(f.stop() == 0);
    p.exec(
        "UPDATE public.users SET version = version + 1, name = 'offline' WHERE id IN "
        "('u4', 'u5', 'u6')");
    p.exec("DELETE FROM public.users WHERE id IN ('u7', 'u8')");
    // The config now names a third: it is copied from a snapshot of its own, and the stream
    // resumes where the first two stopped, each applying what it lacks once.
    { std::ofstream(f.config_path(), std::ios::app) << targets.yaml.substr(second); }
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    CHECK_THAT(f.process().log(), Catch::Contains("target tenant2: joins slot"));
    p.exec("UPDATE public.users SET version = version + 1 WHERE id IN ('u9', 'u10', 'u11')");
    p.exec("INSERT INTO public.users (id, tenant) VALUES ('late', 'tenant2')");
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    check_no_foreign_rows(f, targets);
    REQUIRE(f.wait_caught_up());
    // The copy's temporary slot is gone with its connection (dropped as its backend exits,
    // a moment after the client closed it).
    CHECK(wait_until(
        [&] { return p.exec("SELECT count(*) FROM pg_replication_slots").get(0, 0) == "1"; }, 10s));
    auto s = f.status();
    for (int t = 0; t < kTenants; ++t) CHECK(s["targets"][tenant(t)]["state"] == "streaming");
    // Since this start the first two applied only what changed while they were stopped and
    // after: nothing of before again.
    auto upserts = [&](int t) {
        return s["targets"][tenant(t)]["rows_applied"]["public.users"]["upserts"].get<int>();
    };
    CHECK(upserts(0) == 2);  // u6, u9
    CHECK(upserts(1) == 2);  // u4, u10
    CHECK(f.stop() == 0);
}

TEST_CASE("fan-out: 20 targets on two servers stay equal to their tenants through a SIGKILL",
          "[fanout][integration]") {
    test::PgCluster second("target2");
    constexpr int kMany = 20;
    auto targets = make_targets("hard", kMany, {&test::target_cluster(), &second});
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    options.log_level = "info";
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 20), "
        "'name ' || i FROM generate_series(1, 400) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 60s));
    std::mt19937 rng(4242);
    auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    for (int i = 0; i < 400; ++i) {
        const auto id = "u" + std::to_string(1 + pick(400));
        switch (pick(4)) {
            case 0:
                p.exec("UPDATE public.users SET tenant = '" + tenant(pick(kMany)) +
                       "', version = version + 1 WHERE id = '" + id + "'");
                break;
            case 1: p.exec("DELETE FROM public.users WHERE id = '" + id + "'"); break;
            default:
                p.exec("INSERT INTO public.users (id, tenant, name) VALUES ('" + id + "', '" +
                       tenant(pick(kMany)) +
                       "', 'again') ON CONFLICT (id) DO UPDATE SET "
                       "version = users.version + 1, name = 'n" +
                       std::to_string(i) + "'");
        }
        if (i == 200) {
            f.kill9();
            f.start();
        }
    }
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 90s));
    check_no_foreign_rows(f, targets);
    REQUIRE(f.wait_caught_up(60s));
    // Every target keeps its own checkpoint, on whichever server it is.
    for (const auto& db : targets.databases) {
        auto r = db.connect().exec_params(
            "SELECT count(*) FROM authsync.checkpoint WHERE slot = $1", pg::params(f.slot()));
        CHECK(r.get(0, 0) == "1");
    }
    CHECK(f.status()["targets"].size() == kMany);
    CHECK(f.stop() == 0);
}

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::trunc) << text;
}

}  // namespace

TEST_CASE("fan-out: a target's scope changed under its copy is refused until a resync",
          "[fanout][integration]") {
    auto targets = make_targets("hard", 2);
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    SyncFixture f(options);
    f.provider().exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 3), "
        "'name ' || i FROM generate_series(1, 30) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.stop() == 0);
    // tenant1's database now says it is for tenant2: streaming on would keep tenant1's rows
    // there and never hold tenant2's existing ones.
    auto yaml = read_file(f.config_path());
    const std::string was = "scope: {tenant: " + tenant(1) + "}";
    REQUIRE(yaml.find(was) != std::string::npos);
    write_file(f.config_path(),
               yaml.replace(yaml.find(was), was.size(), "scope: {tenant: " + tenant(2) + "}"));
    f.start_unchecked();
    CHECK(f.process().wait(30s) == 1);
    CHECK_THAT(f.process().log(),
               Catch::Contains("target tenant1: the rows of public.users were copied for "
                               "[tenant=tenant1], the config now says [tenant=tenant2]") &&
                   Catch::Contains("authsync resync"));
    // The resync copies every target again, for the scopes the config now gives.
    auto resync = test::run_cli("resync --config " + f.config_path());
    INFO(resync.text);
    REQUIRE(resync.rc == 0);
    f.start();
    auto tenant2_rows = [&] {
        return provider_rows(f, 2) == target_rows(targets.databases[1]) &&
               provider_rows(f, 0) == target_rows(targets.databases[0]);
    };
    REQUIRE(wait_until(tenant2_rows, 30s));
    for (const auto& id : all_ids(targets.databases[1])) CHECK(provider_rows(f, 2).count(id) == 1);
    CHECK(f.stop() == 0);
}

TEST_CASE("fan-out: teardown removes every target's checkpoint and leaves their users",
          "[fanout][integration]") {
    auto targets = make_targets("soft");
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    SyncFixture f(options);
    f.provider().exec(
        "INSERT INTO public.users (id, tenant) SELECT 'u' || i, 'tenant' || (i % 3) "
        "FROM generate_series(1, 9) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.stop() == 0);
    auto out = test::run_cli("teardown --config " + f.config_path());
    INFO(out.text);
    REQUIRE(out.rc == 0);
    for (int t = 0; t < kTenants; ++t) {
        CHECK_THAT(out.text, Catch::Contains("target " + tenant(t) + ": removed the checkpoint"));
        auto r = targets.databases[t].connect().exec_params(
            "SELECT count(*) FROM authsync.checkpoint WHERE slot = $1", pg::params(f.slot()));
        CHECK(r.get(0, 0) == "0");
        CHECK(target_rows(targets.databases[t]).size() == 3);
    }
}

// A tenant column in the replica identity lets the publication filter each target's rows on
// the provider: a uuid one, written in capitals in the config.
TEST_CASE(
    "fan-out: a uuid tenant in the key is filtered on the provider, and a publication "
    "without a new target's tenant is refused",
    "[fanout][integration]") {
    const std::vector<std::string> tenants = {"6f1c1a52-9a0e-4d7c-8f43-2b1d0c9e7a11",
                                              "0b7e9d84-3c2f-4e51-a6d8-9f0a1b2c3d4e",
                                              "c4d5e6f7-0818-4a2b-9c3d-4e5f60718293"};
    auto upper = [](std::string s) {
        for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        return s;
    };
    std::vector<TargetDb> dbs;
    std::string yaml;
    for (int t = 0; t < 3; ++t) {
        auto db = test::target_cluster().create_database("tenant");
        dbs.push_back({&test::target_cluster(), db});
        yaml += "  - name: " + tenant(t) + "\n    dsn: \"" + test::target_cluster().dsn(db) +
                "\"\n    mappings:\n      - source: public.members\n        key: id\n"
                "        on_delete: hard\n        scope: {tenant: \"" +
                upper(tenants[t]) + "\"}\n        fields: {display_name: name}\n";
    }
    test::SyncOptions options;
    options.provider_ddl = R"(
        CREATE TABLE public.members (
            tenant uuid NOT NULL,
            id text NOT NULL,
            name text,
            PRIMARY KEY (tenant, id));)";
    // The first run knows two of the three targets.
    options.targets_yaml = yaml.substr(0, yaml.find("  - name: " + tenant(2)));
    SyncFixture f(options);
    auto p = f.provider();
    for (int t = 0; t < 3; ++t) {
        p.exec_params(
            "INSERT INTO public.members (tenant, id, name) SELECT $1::uuid, 'm' || i, 'n' || i "
            "FROM generate_series(1, 5) AS i",
            pg::params(tenants[t]));
    }
    auto rows_of = [&](const TargetDb& db) {
        auto r = db.connect().exec("SELECT count(*) FROM neon_auth.users_sync");
        return std::stoi(std::string(r.get(0, 0)));
    };
    f.start();
    REQUIRE(wait_until([&] { return rows_of(dbs[0]) == 5 && rows_of(dbs[1]) == 5; }, 30s));
    // Streamed, and moved between tenants: the filter and the router agree on the tenant.
    p.exec_params("INSERT INTO public.members (tenant, id, name) VALUES ($1::uuid, 'new', 'x')",
                  pg::params(tenants[0]));
    p.exec_params(
        "UPDATE public.members SET tenant = $1::uuid, id = 'moved' WHERE tenant = $2::uuid AND "
        "id = 'm1'",
        pg::params(tenants[0], tenants[1]));
    // tenant0 keeps its own m1: the moved row's old key was tenant1's.
    REQUIRE(wait_until([&] { return rows_of(dbs[0]) == 7 && rows_of(dbs[1]) == 4; }, 30s));
    // One publication, filtered to the two tenants.
    auto filter = p.exec("SELECT rowfilter FROM pg_publication_tables WHERE tablename = 'members'");
    REQUIRE(filter.rows() == 1);
    REQUIRE_FALSE(filter.is_null(0, 0));
    CHECK_THAT(std::string(filter.get(0, 0)), Catch::Contains(tenants[0]) &&
                                                  Catch::Contains(tenants[1]) &&
                                                  !Catch::Contains(tenants[2]));
    REQUIRE(f.stop() == 0);
    // A third target: the publication never streams its tenant's rows, which is refused
    // rather than left silently stale.
    {
        std::ofstream(f.config_path(), std::ios::app)
            << yaml.substr(yaml.find("  - name: " + tenant(2)));
    }
    f.start_unchecked();
    CHECK(f.process().wait(30s) == 1);
    CHECK_THAT(f.process().log(),
               Catch::Contains("filters the rows of public.members without target tenant2's "
                               "scope") &&
                   Catch::Contains("drop publication"));
    CHECK(rows_of(dbs[2]) == 0);
}

TEST_CASE(
    "fan-out: SIGHUP adds a target, which joins with a copy of its own, and removes one, "
    "whose rows stay",
    "[fanout][integration]") {
    auto targets = make_targets("hard");
    const auto at = [&](int t) { return targets.yaml.find("  - name: " + tenant(t)); };
    const auto entry = [&](int t) {
        return targets.yaml.substr(at(t), t + 1 < kTenants ? at(t + 1) - at(t) : std::string::npos);
    };
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = entry(0) + entry(1);
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 3), "
        "'name ' || i FROM generate_series(1, 30) AS i");
    f.start();
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 1}); }, 30s));
    const auto head =
        read_file(f.config_path()).substr(0, read_file(f.config_path()).find(entry(0)));

    // Added: tenant2 is copied and joins while the process runs on.
    write_file(f.config_path(), head + entry(0) + entry(1) + entry(2));
    f.process().signal(SIGHUP);
    p.exec(
        "UPDATE public.users SET version = version + 1, name = 'during' WHERE id IN "
        "('u1', 'u2', 'u3')");
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 1, 2}); }, 30s));
    CHECK(f.process().running());
    CHECK_THAT(f.process().log(), Catch::Contains("reload: targets added [tenant2], removed [], "
                                                  "kept [tenant0, tenant1]") &&
                                      Catch::Contains("target tenant2: joins slot"));
    REQUIRE(wait_until([&] { return f.status()["targets"].size() == 3; }, 10s));
    // Its rows match before its durable position passes where the stream was when it joined
    // (catching_up until then).
    REQUIRE(wait_until([&] { return target_state(f, 2) == "streaming"; }, 30s));
    // `authsync targets` lists them from the status endpoint.
    auto listed = test::run_cli("targets --url " + f.status_url());
    INFO(listed.text);
    CHECK(listed.rc == 0);
    for (int t = 0; t < kTenants; ++t) {
        CHECK_THAT(listed.text, Catch::Matches("(.|\n)*" + tenant(t) + " +streaming(.|\n)*"));
    }

    // Removed: tenant1's writer stops, its rows stay as they were.
    const auto tenant1_before = target_rows(targets.databases[1]);
    write_file(f.config_path(), head + entry(0) + entry(2));
    f.process().signal(SIGHUP);
    REQUIRE(wait_until([&] { return f.status()["targets"].size() == 2; }, 30s));
    p.exec(
        "UPDATE public.users SET version = version + 1, name = 'after' WHERE id IN "
        "('u4', 'u5', 'u6')");  // tenants 1, 2, 0
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 2}); }, 30s));
    CHECK(target_rows(targets.databases[1]) == tenant1_before);
    CHECK_THAT(f.process().log(), Catch::Contains("removed [tenant1]"));

    // A config that does not load leaves the running one in place.
    write_file(f.config_path(), head + "  - name: [broken\n");
    f.process().signal(SIGHUP);
    p.exec("INSERT INTO public.users (id, tenant) VALUES ('late', 'tenant0')");
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 2}); }, 30s));
    CHECK(f.process().running());
    CHECK_THAT(f.process().log(), Catch::Contains("the running config stays"));
    check_no_foreign_rows(f, targets);
    CHECK(f.stop() == 0);
}

// No detach yet (issue 16): a target server that stops holds the stream for every target
// while authsync reconnects; nothing is lost, and all catch up once it is back.
TEST_CASE("fan-out: a target server stopped for a while loses nothing for any target",
          "[fanout][integration]") {
    test::PgCluster second("target2");
    auto targets = make_targets("hard", 4, {&test::target_cluster(), &second});
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 4), "
        "'name ' || i FROM generate_series(1, 40) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    second.stop("immediate");
    for (int i = 0; i < 40; ++i) {
        p.exec("UPDATE public.users SET version = version + 1, name = 'while down " +
               std::to_string(i) + "' WHERE id = 'u" + std::to_string(1 + i % 40) + "'");
    }
    p.exec(
        "INSERT INTO public.users (id, tenant) SELECT 'd' || i, 'tenant' || (i % 4) FROM "
        "generate_series(1, 8) AS i");
    // authsync retries with backoff and says so; it does not exit.
    REQUIRE(wait_until([&] { return f.status()["counters"]["reconnects"].get<int>() > 0; }, 30s));
    CHECK(f.process().running());
    second.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 60s));
    check_no_foreign_rows(f, targets);
    REQUIRE(f.wait_caught_up(30s));
    CHECK(f.stop() == 0);
}

namespace {

// Whether the slot's confirmed_flush_lsn is past `lsn`.
bool slot_past(SyncFixture& f, const std::string& lsn) {
    auto r = f.provider_cluster_of().connect().exec_params(
        "SELECT confirmed_flush_lsn > $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
        pg::params(f.slot(), lsn));
    return r.rows() == 1 && r.get(0, 0) == "t";
}

}  // namespace

// fanout.max_target_lag: the stopped server's targets hold the others back only for the limit,
// then are detached (the slot moves past their checkpoints), and re-attach with a copy of their
// own once the server is back, including what was deleted meanwhile.
TEST_CASE(
    "fan-out: a target server down past fanout.max_target_lag is detached while the others "
    "stream on, then re-attaches with a copy",
    "[fanout][integration]") {
    test::PgCluster second("target2");
    auto targets = make_targets("hard", 4, {&test::target_cluster(), &second});
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    options.extra_yaml = "fanout:\n  max_target_lag: {seconds: 3}\n";
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 4), "
        "'name ' || i FROM generate_series(1, 40) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.wait_caught_up());
    // tenant1 and tenant3 live on the second server; what they hold durably before it stops.
    std::map<int, std::string> held;
    for (int t : {1, 3}) {
        held[t] = f.status()["targets"][tenant(t)]["durable_lsn"].get<std::string>();
    }
    second.stop("immediate");
    const auto stopped = std::chrono::steady_clock::now();
    p.exec("UPDATE public.users SET version = version + 1, name = 'while down'");
    p.exec("DELETE FROM public.users WHERE id IN ('u1', 'u3')");  // tenant1's, tenant3's
    p.exec(
        "INSERT INTO public.users (id, tenant) SELECT 'd' || i, 'tenant' || (i % 4) FROM "
        "generate_series(1, 8) AS i");

    // Detached past the limit; the others stream on without them.
    REQUIRE(wait_until([&] { return target_state(f, 1) == "detached"; }, 30s));
    REQUIRE(wait_until([&] { return target_state(f, 3) == "detached"; }, 30s));
    const auto detached_after = std::chrono::steady_clock::now() - stopped;
    WARN(
        "detached " << std::chrono::duration_cast<std::chrono::milliseconds>(detached_after).count()
                    << " ms after the server stopped");
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 2}); }, 30s));
    p.exec("UPDATE public.users SET version = version + 1, name = 'detached' WHERE id = 'u4'");
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 2}); }, 30s));
    // They no longer hold the slot's WAL: it is acknowledged past their checkpoints.
    REQUIRE(f.wait_caught_up());
    for (int t : {1, 3}) CHECK(slot_past(f, held[t]));
    auto s = f.status();
    CHECK(s["targets"][tenant(0)]["state"] == "streaming");
    CHECK_THAT(s["targets"][tenant(1)]["error"].get<std::string>(),
               Catch::Contains("target tenant1:"));
    auto metrics = test::run_shell_output("curl -s -m 5 " + f.status_url() + "/metrics");
    CHECK_THAT(metrics, Catch::Contains("authsync_target_detached{target=\"tenant1\"} 1") &&
                            Catch::Contains("authsync_target_detached{target=\"tenant0\"} 0"));
    auto listed = test::run_cli("targets --url " + f.status_url());
    CHECK(listed.rc == 1);  // not every target streams
    CHECK_THAT(listed.text, Catch::Matches("(.|\n)*tenant1 +detached(.|\n)*"));
    CHECK(f.process().running());

    // Back: re-attached by a copy of its own (the slot moved past it), deletes included.
    second.start();
    REQUIRE(wait_until([&] { return target_state(f, 1) == "streaming"; }, 60s));
    REQUIRE(wait_until([&] { return target_state(f, 3) == "streaming"; }, 60s));
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 60s));
    CHECK(all_ids(targets.databases[1]).count("u1") == 0);
    check_no_foreign_rows(f, targets);
    const auto log = f.process().log();
    CHECK_THAT(log, Catch::Contains("target tenant1 detached (fanout.max_target_lag)") &&
                        Catch::Contains("target tenant1 answers again; re-attaching it") &&
                        Catch::Contains("target tenant1: joins slot"));
    // Streaming again with every target.
    p.exec("UPDATE public.users SET version = version + 1, name = 'all back'");
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.wait_caught_up());
    CHECK(f.stop() == 0);
}

// A target that refuses a change for good (here a trigger) fails at once with
// fanout.max_target_lag set: the others stream on; a reload tries it again, with a copy.
TEST_CASE("fan-out: a target that refuses a change fails alone, and a reload brings it back",
          "[fanout][integration]") {
    auto targets = make_targets("hard");
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    options.extra_yaml = "fanout:\n  max_target_lag: {seconds: 60}\n";
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 3), "
        "'name ' || i FROM generate_series(1, 30) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    targets.databases[1].connect().exec(R"(
        CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.raw_json->>'display_name' = 'refused' THEN
                RAISE EXCEPTION 'this target refuses the row';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON neon_auth.users_sync
            FOR EACH ROW EXECUTE FUNCTION public.refuse();)");
    p.exec("UPDATE public.users SET name = 'refused', version = version + 1 WHERE id = 'u1'");
    p.exec("UPDATE public.users SET name = 'next', version = version + 1 WHERE id IN ('u3', 'u5')");
    REQUIRE(wait_until([&] { return target_state(f, 1) == "failed"; }, 30s));
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 2}); }, 30s));
    REQUIRE(f.wait_caught_up());
    CHECK(f.process().running());
    CHECK_THAT(f.process().log(), Catch::Contains("target tenant1 failed:"));
    // No row value in the error shown or logged.
    CHECK_THAT(f.status()["targets"][tenant(1)]["error"].get<std::string>(),
               !Catch::Contains("refused"));
    CHECK_THAT(f.process().log(), !Catch::Contains("refused"));
    // Not probed back: it stays failed while nothing changes.
    std::this_thread::sleep_for(std::chrono::seconds(6));
    CHECK(target_state(f, 1) == "failed");

    // The operator drops the trigger and reloads: copied again, it joins.
    targets.databases[1].connect().exec("DROP TRIGGER refuse ON neon_auth.users_sync");
    f.process().signal(SIGHUP);
    REQUIRE(wait_until([&] { return target_state(f, 1) == "streaming"; }, 30s));
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    check_no_foreign_rows(f, targets);
    CHECK(f.stop() == 0);
}

// A target whose table stays locked (a migration, a transaction left open) answers nothing:
// with fanout.max_target_lag its unanswered step is cut at the limit's seconds and it is
// detached, the others stream on; while the lock stays its copy gives up at the limit and is
// tried again; once the lock goes it re-attaches with a copy.
TEST_CASE("fan-out: a target stalled by a lock is detached at the limit, and re-attaches after",
          "[fanout][integration]") {
    auto targets = make_targets("hard");
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    options.extra_yaml = "fanout:\n  max_target_lag: {seconds: 3}\n";
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 3), "
        "'name ' || i FROM generate_series(1, 30) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.wait_caught_up());
    auto locker = targets.databases[1].connect();
    locker.exec("BEGIN");
    locker.exec("LOCK TABLE neon_auth.users_sync IN ACCESS EXCLUSIVE MODE");
    const auto locked = std::chrono::steady_clock::now();
    p.exec("UPDATE public.users SET version = version + 1, name = 'while locked'");

    REQUIRE(wait_until([&] { return target_state(f, 1) == "detached"; }, 30s));
    const auto detached_after = std::chrono::steady_clock::now() - locked;
    WARN(
        "detached " << std::chrono::duration_cast<std::chrono::milliseconds>(detached_after).count()
                    << " ms after its table was locked");
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 2}); }, 30s));
    CHECK_THAT(f.process().log(),
               Catch::Contains("target tenant1: no answer for 3 s (fanout.max_target_lag)"));
    // While the lock stays, the probe finds the server answering, and its copy waits on the lock
    // for the limit, then is tried again: the others go on all along.
    for (int round = 0; round < 3; ++round) {
        p.exec(
            "UPDATE public.users SET version = version + 1, name = 'still locked' WHERE id = "
            "'u3'");  // tenant0's
        REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 2}); }, 30s));
        std::this_thread::sleep_for(2s);
    }
    CHECK(target_state(f, 1) != "streaming");
    CHECK(f.process().running());

    locker.exec("COMMIT");
    REQUIRE(wait_until([&] { return target_state(f, 1) == "streaming"; }, 60s));
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    p.exec("UPDATE public.users SET version = version + 1, name = 'unlocked'");
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.wait_caught_up());
    check_no_foreign_rows(f, targets);
    CHECK_THAT(f.process().log(), !Catch::Contains("still locked"));
    CHECK(f.stop() == 0);
}

// A target that answers every batch, but slowly (here a trigger that sleeps per row), holds
// every target back, since each commits every batch: once it has been the slowest per change
// by far for the limit's seconds while the stream fell that far behind, it is detached, and
// the others catch up.
TEST_CASE("fan-out: a target slow per change is detached once it holds the stream back",
          "[fanout][integration]") {
    auto targets = make_targets("hard");
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    // Small batches: each of the slow target's steps answers well within the limit, so the stall
    // watchdog is not what detaches it.
    options.extra_yaml = "fanout:\n  max_target_lag: {seconds: 3}\napply:\n  batch_max_rows: 30\n";
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 3), "
        "'name ' || i FROM generate_series(1, 30) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.wait_caught_up());
    targets.databases[1].connect().exec(R"(
        CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$;
        CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON neon_auth.users_sync
            FOR EACH ROW EXECUTE FUNCTION public.slow();
    )");
    // 20 transactions a second, each with 10 new users per tenant: 2 s of the slow target's
    // time per second, so the stream falls behind.
    const auto began = std::chrono::steady_clock::now();
    bool detached = false;
    for (int round = 0; round < 600 && !detached; ++round) {
        p.exec(fmt::format(
            "INSERT INTO public.users (id, tenant, name) SELECT 'r{}-' || i, 'tenant' || (i % 3), "
            "'slow ' || i FROM generate_series(1, 30) AS i",
            round));
        std::this_thread::sleep_for(50ms);
        if (round % 10 == 0) detached = target_state(f, 1) == "detached";
    }
    REQUIRE(wait_until([&] { return target_state(f, 1) == "detached"; }, 30s));
    WARN("detached " << std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - began)
                            .count()
                     << " ms after the slow writes began");
    targets.databases[1].connect().exec("DROP TRIGGER slow ON neon_auth.users_sync");
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 2}); }, 30s));
    const auto log = f.process().log();
    CHECK_THAT(log, Catch::Contains("target tenant1: ") &&
                        Catch::Contains("slower per change than every other target") &&
                        Catch::Contains("target tenant1 detached (fanout.max_target_lag)"));
    CHECK_THAT(log, !Catch::Contains("no answer for"));  // not the stall watchdog
    CHECK(target_state(f, 0) == "streaming");

    // Re-attached once it answers (a copy), and equal to its tenant.
    REQUIRE(wait_until([&] { return target_state(f, 1) == "streaming"; }, 60s));
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    p.exec("UPDATE public.users SET version = version + 1, name = 'all back'");
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.wait_caught_up());
    check_no_foreign_rows(f, targets);
    CHECK(f.stop() == 0);
}

// fanout.max_target_lag.bytes alone: a target whose server is down is waited for, however long,
// until its checkpoint is that far behind the provider's WAL; then it is detached.
TEST_CASE("fan-out: a target down is detached once it holds fanout.max_target_lag.bytes of WAL",
          "[fanout][integration]") {
    test::PgCluster second("target2");
    auto targets = make_targets("hard", 3, {&test::target_cluster(), &second});
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    options.extra_yaml = "fanout:\n  max_target_lag: {bytes: 4MB}\n";
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 3), "
        "'name ' || i FROM generate_series(1, 30) AS i");
    f.start();
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.wait_caught_up());
    second.stop("immediate");  // tenant1's server
    // The batch that finds it down still commits in the others; the sessions after it fail at
    // their start, so the next change reaches no target.
    p.exec("UPDATE public.users SET version = version + 1, name = 'while down'");
    REQUIRE(wait_until([&] { return f.status()["last_error"].is_object(); }, 30s));
    p.exec("UPDATE public.users SET version = version + 1, name = 'held' WHERE tenant = 'tenant0'");
    // Well under 4 MB of WAL: waited for (the others too, as without a limit), however long.
    std::this_thread::sleep_for(8s);
    CHECK(target_state(f, 1) != "detached");
    CHECK_FALSE(tenants_match(f, targets, {0}));
    CHECK(f.process().running());
    // 5 MB more of the provider's WAL (a logical message, which the publication does not carry).
    p.exec("SELECT pg_logical_emit_message(false, 'authsync-test', repeat('x', 5000000))");
    REQUIRE(wait_until([&] { return target_state(f, 1) == "detached"; }, 30s));
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 2}); }, 30s));
    CHECK_THAT(f.process().log(),
               Catch::Contains("target tenant1 detached (fanout.max_target_lag)"));

    second.start();
    REQUIRE(wait_until([&] { return target_state(f, 1) == "streaming"; }, 60s));
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 60s));
    REQUIRE(f.wait_caught_up());
    check_no_foreign_rows(f, targets);
    CHECK(f.stop() == 0);
}

// A target added to a running sidecar copies alongside the stream: the others go on applying,
// and the slot is acknowledged no further than before the copy's snapshot until the new target
// streams too.
TEST_CASE("fan-out: the other targets stream on while a target added by SIGHUP copies",
          "[fanout][integration]") {
    auto targets = make_targets("hard");
    const auto at = [&](int t) { return targets.yaml.find("  - name: " + tenant(t)); };
    test::SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml.substr(0, at(2));
    SyncFixture f(options);
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % 3), "
        "'name ' || i FROM generate_series(1, 30) AS i");
    f.start();
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 1}); }, 30s));
    // A transaction left open on the provider holds the new target's copy before its snapshot
    // (a temporary slot waits for the transactions running when it is made).
    auto blocker = f.provider();
    blocker.exec("BEGIN");
    blocker.exec("INSERT INTO public.unrelated (note) VALUES ('left open')");
    { std::ofstream(f.config_path(), std::ios::app) << targets.yaml.substr(at(2)); }
    f.process().signal(SIGHUP);
    REQUIRE(wait_until([&] { return target_state(f, 2) == "copying"; }, 30s));
    const auto before = f.provider_value("SELECT pg_current_wal_lsn()");
    p.exec(
        "UPDATE public.users SET version = version + 1, name = 'during the copy' WHERE id IN "
        "('u3', 'u4')");  // tenant0's, tenant1's
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {0, 1}); }, 30s));
    std::this_thread::sleep_for(1s);  // several status intervals
    CHECK(target_state(f, 2) == "copying");
    CHECK(target_state(f, 0) == "streaming");
    CHECK(f.status()["state"] == "streaming");
    // Held: the slot still has what the copy's snapshot will not.
    CHECK_FALSE(slot_past(f, before));

    blocker.exec("COMMIT");
    REQUIRE(wait_until([&] { return target_state(f, 2) == "streaming"; }, 30s));
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    p.exec("UPDATE public.users SET version = version + 1, name = 'after' WHERE id = 'u5'");
    REQUIRE(wait_until([&] { return targets_match(f, targets); }, 30s));
    REQUIRE(f.wait_caught_up());  // held no more
    CHECK_THAT(f.process().log(),
               Catch::Contains("target tenant2: joins slot") &&
                   Catch::Contains("target tenant2 copied; it joins the stream") &&
                   Catch::Contains("target tenant2 caught up at"));
    check_no_foreign_rows(f, targets);
    // Nothing applied twice across the hand-over: one upsert each since the start.
    auto s = f.status();
    auto upserts = [&](int t) {
        return s["targets"][tenant(t)]["rows_applied"]["public.users"]["upserts"].get<int>();
    };
    CHECK(upserts(0) == 1);  // u3
    CHECK(upserts(1) == 1);  // u4
    CHECK(upserts(2) == 1);  // u5, after its copy
    CHECK(f.stop() == 0);
}
