// Scale-out through NATS JetStream (transport.kind: nats): `authsync run` decodes the slot once
// and publishes each target's frames; one `authsync sink --target NAME` per target applies
// them. Real servers throughout: the provider and targets are PostgreSQL, the stream lives on a
// 3-node nats-server cluster (R3) started by the test.
#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "fanout_support.hpp"
#include "nats_cluster.hpp"
#include "preset_support.hpp"
#include "stack_support.hpp"
#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using namespace test::fanout;
using test::SyncFixture;
using test::wait_until;

namespace {

std::string transport_yaml(const test::NatsCluster& nats, const std::string& stream,
                           const std::string& more = "") {
    std::string servers;
    for (const auto& url : nats.urls()) servers += (servers.empty() ? "" : ", ") + url;
    return "transport:\n  kind: nats\n  servers: [" + servers + "]\n  stream: " + stream + "\n" +
           more;
}

// `authsync sink --target NAME` for target `t` of the fixture's config, with a status endpoint.
class Sink {
public:
    // `authsync sink` for `targets` (one process applying each of them).
    Sink(SyncFixture& f, const std::vector<std::string>& targets, const std::string& suffix = "")
        : port_(test::free_port()),
          process_(argv(f, targets, port_), (std::filesystem::path(f.config_path()).parent_path() /
                                             ("sink-" + targets.front() + suffix + ".log"))
                                                .string()) {}
    Sink(SyncFixture& f, const std::string& target, const std::string& suffix = "")
        : Sink(f, std::vector<std::string>{target}, suffix) {}
    ~Sink() {
        if (process_.running()) process_.kill9();
    }
    void start() { process_.start(); }
    void kill9() { process_.kill9(); }
    int stop() {
        process_.signal(SIGTERM);
        return process_.wait(15s);
    }
    bool running() { return process_.running(); }
    std::string log() const { return process_.log(); }
    nlohmann::json status() const {
        auto j = nlohmann::json::parse(
            test::run_shell_output(fmt::format("curl -s -m 5 http://127.0.0.1:{}/status", port_)),
            nullptr, false);
        return j.is_object() ? j : nlohmann::json::object();
    }

private:
    static std::vector<std::string> argv(SyncFixture& f, const std::vector<std::string>& targets,
                                         int port) {
        std::vector<std::string> out{
            AUTHSYNC_EXE, "--log-level",   "debug",    "sink",
            "--config",   f.config_path(), "--listen", "127.0.0.1:" + std::to_string(port)};
        for (const auto& t : targets) {
            out.push_back("--target");
            out.push_back(t);
        }
        return out;
    }
    int port_;
    test::Process process_;
};

std::vector<std::unique_ptr<Sink>> start_sinks(SyncFixture& f, int count) {
    std::vector<std::unique_ptr<Sink>> sinks;
    for (int t = 0; t < count; ++t) {
        sinks.push_back(std::make_unique<Sink>(f, tenant(t)));
        sinks.back()->start();
    }
    return sinks;
}

// Every target equals its tenant; on failure, the logs say why.
void require_match(SyncFixture& f, const FanoutTargets& targets,
                   const std::vector<std::unique_ptr<Sink>>& sinks,
                   std::chrono::milliseconds timeout = 90s) {
    const bool matched = wait_until([&] { return targets_match(f, targets); }, timeout);
    if (!matched) {
        for (std::size_t t = 0; t < targets.databases.size(); ++t) {
            INFO("tenant " << t << ": provider " << provider_rows(f, static_cast<int>(t)).size()
                           << " rows, target " << target_rows(targets.databases[t]).size());
        }
        for (const auto& s : sinks) UNSCOPED_INFO("sink log:\n" << s->log());
        UNSCOPED_INFO("source log:\n" << f.process().log());
    }
    REQUIRE(matched);
}

// Since audit_applications: changes were applied to every target, none of them twice.
void check_applied_once(const FanoutTargets& targets) {
    for (std::size_t t = 0; t < targets.databases.size(); ++t) {
        INFO("tenant " << t);
        CHECK(applications(targets.databases[t]) > 0);
        CHECK(applied_twice(targets.databases[t]) == 0);
    }
}

// Whether some target's apply lanes' checkpoint rows stand at different positions.
bool lanes_apart(SyncFixture& f, const FanoutTargets& targets) {
    for (const auto& db : targets.databases) {
        auto r = db.connect().exec_params(
            "SELECT count(DISTINCT end_lsn) FROM authsync.checkpoint WHERE slot = $1 OR "
            "starts_with(slot, $1 || '/lane')",
            pg::params(f.slot()));
        if (std::stoi(std::string(r.get(0, 0))) > 1) return true;
    }
    return false;
}

// A consumer of a stream as one node's /jsz lists it: a node lists the consumers it keeps (a
// session's consumer has one replica, so one running node lists it). `waiting`: pull
// requests waiting on it (a live session's fetch; one left by an earlier session has none).
struct HeldConsumer {
    std::string name;
    int waiting = 0;
};

std::vector<HeldConsumer> consumers_on(const test::NatsCluster& nats, int node,
                                       const std::string& stream) {
    std::vector<HeldConsumer> out;
    auto j = nlohmann::json::parse(
        nats.monitor(node, "/jsz?accounts=true&streams=true&consumers=true"), nullptr, false);
    if (!j.is_object()) return out;
    for (const auto& account : j.value("account_details", nlohmann::json::array())) {
        for (const auto& st : account.value("stream_detail", nlohmann::json::array())) {
            if (st.value("name", "") != stream) continue;
            for (const auto& c : st.value("consumer_detail", nlohmann::json::array())) {
                out.push_back({c.value("name", ""), c.value("num_waiting", 0)});
            }
        }
    }
    return out;
}

// The stream's first and last sequence as node 0 sees it ({0, 0} before it answers).
std::pair<std::uint64_t, std::uint64_t> stream_bounds(const test::NatsCluster& nats,
                                                      const std::string& stream) {
    auto j =
        nlohmann::json::parse(nats.monitor(0, "/jsz?accounts=true&streams=true"), nullptr, false);
    if (!j.is_object()) return {0, 0};
    for (const auto& account : j.value("account_details", nlohmann::json::array())) {
        for (const auto& st : account.value("stream_detail", nlohmann::json::array())) {
            if (st.value("name", "") != stream) continue;
            const auto state = st.value("state", nlohmann::json::object());
            return {state.value("first_seq", std::uint64_t{0}),
                    state.value("last_seq", std::uint64_t{0})};
        }
    }
    return {0, 0};
}

}  // namespace

TEST_CASE("JetStream: a source and a sink per target keep each tenant equal, through SIGKILLs",
          "[jetstream][scaleout][integration]") {
    test::NatsCluster nats(3);
    nats.wait_healthy();
    auto targets = make_targets("hard");
    auto options = tenant_options(
        targets, "apply:\n  batch_max_rows: 50\n" + transport_yaml(nats, "SCALEOUT1"));
    SyncFixture f(options);
    seed_users(f, kTenants);
    f.start();  // the source: publishes, copies nothing
    auto sinks = start_sinks(f, kTenants);
    // Each sink copies its own target (a temporary slot's snapshot), then applies its subject.
    require_match(f, targets, sinks);
    // The source copies nothing itself, and no target database was written by it.
    CHECK(f.process().log().find("copying") == std::string::npos);
    for (const auto& db : targets.databases) audit_applications(db);

    Workload work(f, kTenants, 20261206);
    std::vector<int> first_copies(kTenants, 0);
    for (int round = 0; round < 4; ++round) {
        work.run(60);
        if (round == 0) {
            // A sink's copy may predate the source's first frame for its subject: it finds a
            // gap there and copies again, once. Once a frame is applied, that has passed.
            for (int t = 0; t < kTenants; ++t) {
                CHECK(wait_until(
                    [&] { return sinks[t]->status()["transport"]["frames"].get<int>() > 0; }, 60s));
                first_copies[t] = sinks[t]->status()["transport"]["copies"].get<int>();
            }
        }
        switch (round) {
            case 0:  // the source dies mid-stream: what it had not stored comes again
                f.kill9();
                f.start();
                break;
            case 1:  // a sink dies with frames applied and not acknowledged
                sinks[1]->kill9();
                sinks[1]->start();
                break;
            case 2:  // both at once
                f.kill9();
                sinks[2]->kill9();
                work.run(30);
                f.start();
                sinks[2]->start();
                break;
            default: break;
        }
        work.run(60);
    }
    require_match(f, targets, sinks);
    check_no_foreign_rows(f, targets);
    // Each target's checkpoint holds where its frames end; the slot moves on.
    REQUIRE(f.wait_caught_up(60s));
    for (int t = 0; t < kTenants; ++t) {
        // (A sink may be between sessions a moment: a redelivery out of order ends one.)
        CHECK(
            wait_until([&] { return sinks[t]->status().value("state", "") == "streaming"; }, 30s));
        auto s = sinks[t]->status();
        INFO("sink " << t << ": " << s.dump());
        CHECK(s["transport"]["role"] == "sink");
        CHECK(s["transport"]["frames"].get<int>() > 0);
        // No copy past the first ones: sinks 1 and 2 were started again with checkpoints
        // (frames applied twice, or late, are skipped or read again, never copied).
        CHECK(s["transport"]["copies"].get<int>() == (t == 1 || t == 2 ? 0 : first_copies[t]));
    }
    const auto source = f.status();
    CHECK(source["transport"]["frames"].get<int>() > 0);
    CHECK(source["transport"]["unacked"].get<int>() == 0);  // caught up: the stream holds all
    check_applied_once(targets);
    CHECK(f.stop() == 0);
    for (auto& s : sinks) CHECK(s->stop() == 0);
    // No row value in any log (the frames carry them; they are never logged).
    for (const auto& s : sinks) CHECK(s->log().find("@example.com") == std::string::npos);
}

TEST_CASE("JetStream: a NATS node lost and the whole cluster restarted lose nothing",
          "[jetstream][scaleout][integration]") {
    test::NatsCluster nats(3);
    nats.wait_healthy();
    auto targets = make_targets("hard", 2);
    auto options = tenant_options(targets, transport_yaml(nats, "SCALEOUT2"));
    SyncFixture f(options);
    seed_users(f, 2);
    f.start();
    // One sink process applies both targets.
    std::vector<std::unique_ptr<Sink>> sinks;
    sinks.push_back(std::make_unique<Sink>(f, std::vector<std::string>{tenant(0), tenant(1)}));
    sinks.back()->start();
    require_match(f, targets, sinks);
    {
        auto s = sinks.front()->status();
        INFO(s.dump());
        CHECK(s["targets"].size() == 2);
        CHECK(s["transport"]["copies"].get<int>() == 2);
    }
    for (const auto& db : targets.databases) audit_applications(db);
    Workload work(f, 2, 7);
    // One node of three killed mid-stream (the stream has 3 replicas): publishes and
    // deliveries go on through the other two.
    work.run(40);
    nats.kill(1);
    work.run(60);
    require_match(f, targets, sinks);
    nats.start(1);
    nats.wait_healthy();
    work.run(40);
    require_match(f, targets, sinks);
    // JetStream restarted entirely while the source is down: the stream comes back from the
    // nodes' stores, the source from its slot.
    f.kill9();
    work.run(40);
    for (int n = 0; n < nats.size(); ++n) nats.stop(n);
    for (int n = 0; n < nats.size(); ++n) nats.start(n);
    nats.wait_healthy();
    f.start();
    work.run(40);
    require_match(f, targets, sinks);
    check_no_foreign_rows(f, targets);
    check_applied_once(targets);
    CHECK(f.stop() == 0);
    for (auto& s : sinks) CHECK(s->stop() == 0);
}

// A sink session's consumer has one replica, kept in memory (JetStream::session_consumer):
// the target's checkpoint is the truth. Losing the node that holds it loses the consumer; the
// sink notices (its probe fails), starts a new session on a node still up, from the target's
// checkpoint, and applies nothing twice. The node is picked by where the consumer is.
TEST_CASE("JetStream: a sink whose consumer's node is lost goes on from its checkpoint",
          "[jetstream][scaleout][integration]") {
    test::NatsCluster nats(3);
    nats.wait_healthy();
    const std::string stream = "SCALEOUT_R1";
    auto targets = make_targets("hard", 1);
    auto options = tenant_options(targets, transport_yaml(nats, stream));
    SyncFixture f(options);
    seed_users(f, 1);
    f.start();
    auto sinks = start_sinks(f, 1);
    require_match(f, targets, sinks);
    audit_applications(targets.databases[0]);
    Workload work(f, 1, 5);
    work.run(30);
    require_match(f, targets, sinks);
    // Where the session's consumer is: the one with the sink's fetch waiting on it, on one node.
    int holder = -1;
    std::string consumer;
    REQUIRE(wait_until(
        [&] {
            std::map<std::string, int> nodes_listing;
            holder = -1;
            int live = 0;
            for (int n = 0; n < nats.size(); ++n) {
                for (const auto& c : consumers_on(nats, n, stream)) {
                    ++nodes_listing[c.name];
                    if (c.waiting == 0) continue;
                    ++live;
                    holder = n;
                    consumer = c.name;
                }
            }
            for (const auto& [name, count] : nodes_listing) CHECK(count == 1);  // one replica
            return live == 1;
        },
        15s));
    nats.kill(holder);
    work.run(60);
    require_match(f, targets, sinks, 120s);
    // A new consumer, on a node that is up.
    std::string replacement;
    for (int n = 0; n < nats.size(); ++n) {
        if (n == holder) continue;
        for (const auto& c : consumers_on(nats, n, stream)) {
            if (c.name != consumer) replacement = c.name;
        }
    }
    CHECK_FALSE(replacement.empty());
    WARN("the sink's consumer " << consumer << " was on n" << holder + 1 << ", killed; then "
                                << replacement);
    CHECK(wait_until([&] { return sinks[0]->status().value("state", "") == "streaming"; }, 30s));
    CHECK(sinks[0]->status()["transport"]["copies"].get<int>() == 1);  // the first one only
    nats.start(holder);
    nats.wait_healthy();
    work.run(30);
    require_match(f, targets, sinks);
    check_no_foreign_rows(f, targets);
    check_applied_once(targets);
    CHECK(f.stop() == 0);
    for (auto& s : sinks) CHECK(s->stop() == 0);
}

TEST_CASE("JetStream: a sink moved to another process takes its target over, one at a time",
          "[jetstream][scaleout][integration]") {
    test::NatsCluster nats(3);
    nats.wait_healthy();
    auto targets = make_targets("hard", 2);
    auto options = tenant_options(targets, transport_yaml(nats, "SCALEOUT3"));
    SyncFixture f(options);
    seed_users(f, 2);
    f.start();
    auto sinks = start_sinks(f, 2);
    require_match(f, targets, sinks);
    // A second sink of tenant0 (another machine, in production) waits: the target's advisory
    // lock lets one write.
    Sink second(f, tenant(0), "-second");
    second.start();
    REQUIRE(wait_until(
        [&] { return second.log().find("another instance holds") != std::string::npos; }, 30s));
    for (const auto& db : targets.databases) audit_applications(db);
    Workload work(f, 2, 99);
    work.run(60);
    require_match(f, targets, sinks);
    CHECK(second.status().value("state", "") != "streaming");
    // The first dies: the second takes the target over, from its checkpoint.
    sinks[0]->kill9();
    work.run(60);
    std::vector<std::unique_ptr<Sink>> now;
    require_match(f, targets, now);
    REQUIRE(wait_until([&] { return second.status().value("state", "") == "streaming"; }, 30s));
    CHECK(second.status()["transport"]["copies"].get<int>() == 0);  // no copy: its checkpoint
    check_no_foreign_rows(f, targets);
    check_applied_once(targets);
    CHECK(second.stop() == 0);
    CHECK(sinks[1]->stop() == 0);
    CHECK(f.stop() == 0);
}

TEST_CASE("JetStream: a sink behind the stream's retention copies its target again",
          "[jetstream][scaleout][integration]") {
    test::NatsCluster nats(3);
    nats.wait_healthy();
    auto targets = make_targets("hard", 2);
    // Frames older than 2 s are gone from the stream.
    auto options = tenant_options(
        targets, transport_yaml(nats, "SCALEOUT4", "  max_age: 2s\n  duplicate_window: 1s\n"));
    SyncFixture f(options);
    seed_users(f, 2);
    f.start();
    auto sinks = start_sinks(f, 2);
    require_match(f, targets, sinks);
    REQUIRE(sinks[0]->stop() == 0);
    Workload work(f, 2, 5);
    work.run(80);
    // tenant1 applies on; tenant0's frames age out while its sink is away.
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {1}); }, 60s));
    // Every frame stored so far aged out (the server expires them on its own timer, late on a
    // busy machine).
    const auto published = stream_bounds(nats, "SCALEOUT4").second;
    REQUIRE(published > 0);
    REQUIRE(wait_until([&] { return stream_bounds(nats, "SCALEOUT4").first > published; }, 60s));
    // tenant0 gets no change until its sink is back, so its subject holds no frame with
    // changes: only the source's marks (frame.hpp) show the sink that it is behind. A user
    // added to tenant1 (an insert is routed to its tenant alone; an update is routed to every
    // target, as a delete where the row is not in scope) takes the source past tenant0's last
    // frame.
    f.provider().exec("INSERT INTO public.users (id, tenant, name) VALUES ('late', '" + tenant(1) +
                      "', 'added')");
    REQUIRE(wait_until([&] { return tenants_match(f, targets, {1}); }, 60s));
    REQUIRE_FALSE(tenants_match(f, targets, {0}));
    sinks[0]->start();
    require_match(f, targets, sinks);
    REQUIRE(wait_until(
        [&] { return sinks[0]->log().find("copying it again") != std::string::npos; }, 30s));
    REQUIRE(wait_until([&] { return sinks[0]->status().value("state", "") == "streaming"; }, 30s));
    CHECK(sinks[0]->status()["transport"]["copies"].get<int>() >= 1);
    CHECK(f.status()["transport"]["marks"].get<int>() > 0);
    // The gap shows on the new consumer's first delivery (the oldest frame stored): certain,
    // copied at once, with no reread first.
    CHECK(sinks[0]->log().find("reading the subject again") == std::string::npos);
    // It streams on from its copy.
    work.run(20);
    require_match(f, targets, sinks);
    check_no_foreign_rows(f, targets);
    for (auto& s : sinks) CHECK(s->stop() == 0);
    CHECK(f.stop() == 0);
}

// Marks go only where the provider answers: a source cut off from its walsender (here it is
// stopped; a network partition, or the slot taken by another source, looks the same) marks
// nothing, since a mark names a chain that another session may have moved on.
TEST_CASE("JetStream: the source marks idle subjects only while the provider answers",
          "[jetstream][scaleout][integration]") {
    test::NatsCluster nats(1);
    nats.wait_healthy();
    auto targets = make_targets("hard", 2);
    // Marks every second (a quarter of max_age).
    auto options = tenant_options(
        targets, transport_yaml(nats, "SCALEOUT6", "  max_age: 4s\n  duplicate_window: 1s\n"));
    SyncFixture f(options);
    seed_users(f, 2);
    f.start();
    const auto marks = [&] {
        return f.status().value("transport", nlohmann::json::object()).value("marks", 0);
    };
    // A user added to tenant1 takes the source past tenant0's last frame: tenant0 is marked.
    f.provider().exec("INSERT INTO public.users (id, tenant, name) VALUES ('m1', '" + tenant(1) +
                      "', 'added')");
    REQUIRE(wait_until([&] { return marks() > 0; }, 30s));
    const auto walsender = std::stoi(f.provider_value(
        "SELECT pid FROM pg_stat_replication WHERE application_name = 'authsync'"));
    REQUIRE(::kill(walsender, SIGSTOP) == 0);
    std::this_thread::sleep_for(1500ms);  // a round that had its answer already may finish
    const auto stopped = marks();
    std::this_thread::sleep_for(4s);
    const auto later = marks();
    REQUIRE(::kill(walsender, SIGCONT) == 0);
    CHECK(later == stopped);
    // Answered again: marked again.
    CHECK(wait_until([&] { return marks() > later; }, 30s));
    CHECK(f.stop() == 0);
}

// The story on Stack Auth's schema: 10 projects in one provider, each synced into its
// own database by a sink of its own, with the source and sinks killed during the traffic.
TEST_CASE("JetStream: 10 Stack projects, a sink each, through SIGKILLs of the source and sinks",
          "[jetstream][scaleout][stack-auth][integration]") {
    test::NatsCluster nats(3);
    nats.wait_healthy();
    constexpr int kProjects = 10;
    auto tenancy = [](int i) { return fmt::format("00000000-0000-4000-8000-{:012d}", i); };
    std::string ddl = test::read_preset_fixture("stack-auth", "schema.sql") + "\n" +
                      test::read_preset_fixture("stack-auth", "workload.sql") +
                      "\nINSERT INTO \"Tenancy\" (id, \"projectId\", \"branchId\") VALUES ";
    for (int i = 0; i < kProjects; ++i) {
        ddl += fmt::format("{}('{}', 'p{}', 'main')", i ? ", " : "", tenancy(i), i);
    }
    ddl += ";\n";
    test::SyncOptions o;
    o.provider_ddl = ddl;
    o.log_level = "info";
    o.extra_yaml = transport_yaml(nats, "SCALEOUT5");
    std::vector<std::string> dbs;
    for (int i = 0; i < kProjects; ++i) {
        dbs.push_back(test::target_cluster().create_database("stack"));
        o.targets_yaml += fmt::format(
            "  - name: t{}\n    dsn: \"{}\"\n    mappings:\n      - preset: stack-auth\n"
            "        preset_options: {{project_id: p{}}}\n",
            i, test::target_cluster().dsn(dbs.back()), i);
    }
    SyncFixture f(o);
    for (int i = 0; i < kProjects; ++i) {
        f.provider().exec(fmt::format("CALL stack_seed('{}', 6, 0.{})", tenancy(i), 10 + i));
    }
    f.start();
    std::vector<std::unique_ptr<Sink>> sinks;
    for (int i = 0; i < kProjects; ++i) {
        sinks.push_back(std::make_unique<Sink>(f, "t" + std::to_string(i)));
        sinks.back()->start();
    }
    auto all_match = [&] {
        for (int i = 0; i < kProjects; ++i) {
            if (!test::target_matches(f, dbs[i], tenancy(i))) return false;
        }
        return true;
    };
    REQUIRE(wait_until(all_match, 300s));
    auto workload = [&](int a, int b, int seed) {
        return fmt::format("CALL stack_workload('{}', '{}', 0.{}, 200)", tenancy(a), tenancy(b),
                           seed);
    };
    // The source killed during three projects' traffic (each with another's beside it), and
    // two sinks killed and restarted meanwhile.
    int kills = 0;
    for (int i : {0, 1, 2}) {
        if (i == 1) {
            sinks[3]->kill9();
            sinks[7]->kill9();
        }
        kills += test::run_with_kills(f, workload(i, i + 5, 50 + i), 1, 700ms);
        if (i == 1) {
            sinks[3]->start();
            sinks[7]->start();
        }
    }
    CHECK(kills >= 1);
    const bool matched = wait_until(all_match, 300s);
    if (!matched) {
        for (const auto& s : sinks) UNSCOPED_INFO("sink log:\n" << s->log());
    }
    REQUIRE(matched);
    for (int i = 0; i < kProjects; ++i) {
        INFO("t" << i);
        test::require_target_matches(f, dbs[i], tenancy(i));
    }
    CHECK(f.stop() == 0);
    for (auto& s : sinks) CHECK(s->stop() == 0);
}

TEST_CASE("JetStream: targets run in-process with apply lanes are taken over by sinks",
          "[jetstream][scaleout][integration]") {
    test::NatsCluster nats(3);
    nats.wait_healthy();
    auto targets = make_targets("hard", 2);
    auto options = tenant_options(targets, "apply:\n  lanes: 4\n");
    SyncFixture f(options);
    seed_users(f, 2);
    f.start();  // in-process, four lanes into each target
    Workload work(f, 2, 11);
    work.run(60);
    std::vector<std::unique_ptr<Sink>> none;
    require_match(f, targets, none);
    REQUIRE(f.stop() == 0);
    // The same config, now through the stream: each sink starts from its target's lanes.
    {
        std::ofstream config(f.config_path(), std::ios::app);
        config << transport_yaml(nats, "SCALEOUT6");
    }
    work.run(40);  // while nothing runs: the slot keeps it
    f.start();
    auto sinks = start_sinks(f, 2);
    work.run(40);
    require_match(f, targets, sinks);
    for (int t = 0; t < 2; ++t) {
        CHECK_THAT(sinks[t]->log(), Catch::Contains("apply lanes' checkpoints made one"));
        CHECK(sinks[t]->status()["transport"]["copies"].get<int>() == 0);
        auto rows = targets.databases[t].connect().exec_params(
            "SELECT count(*) FROM authsync.checkpoint WHERE slot LIKE $1 || '%'",
            pg::params(f.slot()));
        CHECK(rows.get(0, 0) == "1");
    }
    check_no_foreign_rows(f, targets);
    CHECK(f.stop() == 0);
    for (auto& s : sinks) CHECK(s->stop() == 0);
}

// A crash leaves apply lanes at different positions: each lane's keys are in the target up to
// its own row. Sinks taking such a target over apply each key's changes past its own lane's
// row only, so that nothing is applied twice, and make the rows one once past them all.
TEST_CASE("JetStream: sinks take over apply lanes killed apart and apply nothing twice",
          "[jetstream][scaleout][integration]") {
    test::NatsCluster nats(3);
    nats.wait_healthy();
    auto targets = make_targets("hard", 2);
    auto options = tenant_options(targets, "apply:\n  lanes: 4\n  batch_max_rows: 5\n");
    SyncFixture f(options);
    seed_users(f, 2);
    f.start();  // in-process, four lanes into each target
    std::vector<std::unique_ptr<Sink>> none;
    require_match(f, targets, none);
    for (const auto& db : targets.databases) audit_applications(db);
    Workload work(f, 2, 31);
    // Killed under traffic until some target's lanes stand apart.
    int attempts = 0;
    for (; attempts < 10; ++attempts) {
        work.run(40, [&](int i) {
            if (i == 30) f.kill9();
        });
        if (lanes_apart(f, targets)) break;
        f.start();
    }
    INFO(attempts << " kills before the lanes stood apart");
    REQUIRE(lanes_apart(f, targets));
    {
        std::ofstream config(f.config_path(), std::ios::app);
        config << transport_yaml(nats, "SCALEOUT7");
    }
    f.start();
    auto sinks = start_sinks(f, 2);
    work.run(60);
    require_match(f, targets, sinks);
    std::string logs;
    for (const auto& s : sinks) logs += s->log();
    CHECK_THAT(logs, Catch::Contains("apply lanes stopped apart") &&
                         Catch::Contains("past every apply lane's checkpoint"));
    CHECK_FALSE(lanes_apart(f, targets));
    for (int t = 0; t < 2; ++t) {
        auto rows = targets.databases[t].connect().exec_params(
            "SELECT count(*) FROM authsync.checkpoint WHERE slot LIKE $1 || '%'",
            pg::params(f.slot()));
        CHECK(rows.get(0, 0) == "1");
        CHECK(sinks[t]->status()["transport"]["copies"].get<int>() == 0);
    }
    check_no_foreign_rows(f, targets);
    check_applied_once(targets);
    CHECK(f.stop() == 0);
    for (auto& s : sinks) CHECK(s->stop() == 0);
}
