// The sync engine end to end: provider -> authsync run -> target, on real servers.
#include <signal.h>
#include <sys/stat.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <thread>

#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using nlohmann::json;
using test::row_exists;
using test::SyncFixture;
using test::wait_until;

namespace {

json raw_json(SyncFixture& f, const std::string& id) {
    auto r = f.target().exec_params("SELECT raw_json::text FROM neon_auth.users_sync WHERE id = $1",
                                    {id});
    if (r.rows() == 0) return nullptr;
    return json::parse(std::string(r.get(0, 0)));
}

json counters(SyncFixture& f) {
    return f.status().value("counters", json::object());
}

}  // namespace

TEST_CASE("inserts, updates and deletes arrive in users_sync with their types",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec(R"(INSERT INTO public.users (id, name, email, metadata, active, score, bio)
              VALUES ('u1', 'Ada', 'ada@example.com', '{"plan": "pro", "n": [1, 2]}', true,
                      12345678901234567890.5, 'x'))");
    REQUIRE(wait_until([&] { return row_exists(f, "u1"); }));
    auto j = raw_json(f, "u1");
    CHECK(j["id"] == "u1");
    CHECK(j["display_name"] == "Ada");
    CHECK(j["primary_email"] == "ada@example.com");
    CHECK(j["signed_up_at_millis"] == 1704164645678LL);
    CHECK(j["server_metadata"] == json{{"plan", "pro"}, {"n", {1, 2}}});
    CHECK(j["active"] == true);
    CHECK(j["version"] == 1);
    // Numerics are embedded exactly, not through a double.
    CHECK(f.target_value("SELECT raw_json->>'score' FROM neon_auth.users_sync WHERE id = 'u1'") ==
          "12345678901234567890.5");
    // The generated columns follow raw_json.
    CHECK(f.target_value("SELECT name || ' ' || email || ' ' || created_at AT TIME ZONE 'UTC' "
                         "FROM neon_auth.users_sync WHERE id = 'u1'") ==
          "Ada ada@example.com 2024-01-02 03:04:05.678");
    // updated_at is the source commit time.
    CHECK(f.target_value("SELECT updated_at IS NOT NULL AND deleted_at IS NULL FROM "
                         "neon_auth.users_sync WHERE id = 'u1'") == "t");

    p.exec("UPDATE public.users SET name = 'Ada L', email = NULL, version = 2 WHERE id = 'u1'");
    REQUIRE(wait_until([&] { return raw_json(f, "u1")["version"] == 2; }));
    j = raw_json(f, "u1");
    CHECK(j["display_name"] == "Ada L");
    CHECK(j["primary_email"] == nullptr);

    p.exec("DELETE FROM public.users WHERE id = 'u1'");
    REQUIRE(wait_until([&] {
        return f.target_value(
                   "SELECT deleted_at IS NOT NULL FROM neon_auth.users_sync WHERE id = 'u1'") ==
               "t";
    }));
    // Soft delete keeps the row and its data.
    CHECK(raw_json(f, "u1")["display_name"] == "Ada L");

    // A re-created user comes back.
    p.exec("INSERT INTO public.users (id, name, version) VALUES ('u1', 'Ada again', 3)");
    REQUIRE(wait_until([&] { return raw_json(f, "u1")["version"] == 3; }));
    CHECK(f.target_value("SELECT deleted_at IS NULL FROM neon_auth.users_sync WHERE id = 'u1'") ==
          "t");
    CHECK(f.stop() == 0);
}

TEST_CASE("on_delete hard removes the row", "[sync][integration]") {
    test::SyncOptions options;
    options.on_delete = "hard";
    SyncFixture f(options);
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('h1', 'Hal'), ('h2', 'Hil')");
    REQUIRE(wait_until([&] { return row_exists(f, "h1") && row_exists(f, "h2"); }));
    p.exec("DELETE FROM public.users WHERE id = 'h1'");
    REQUIRE(wait_until([&] { return !row_exists(f, "h1"); }));
    CHECK(row_exists(f, "h2"));
    CHECK(f.stop() == 0);
}

TEST_CASE("an update that leaves a TOASTed column unchanged keeps its value",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, name, bio) VALUES ('t1', 'Tom', "
        "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 1000) i))");
    REQUIRE(wait_until([&] { return row_exists(f, "t1"); }));
    const auto bio = raw_json(f, "t1")["bio"].get<std::string>();
    REQUIRE(bio.size() == 32000);
    p.exec("UPDATE public.users SET name = 'Tom T', version = 2 WHERE id = 't1'");
    REQUIRE(wait_until([&] { return raw_json(f, "t1")["version"] == 2; }));
    auto j = raw_json(f, "t1");
    CHECK(j["display_name"] == "Tom T");
    CHECK(j["bio"] == bio);
    // A large raw_json is compressed with lz4 (authsync's session default), not pglz.
    CHECK(f.target_value("SELECT pg_column_compression(raw_json) FROM neon_auth.users_sync "
                         "WHERE id = 't1'") == "lz4");
    CHECK(f.stop() == 0);
}

TEST_CASE("a key change moves the user", "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('k1', 'Kim')");
    REQUIRE(wait_until([&] { return row_exists(f, "k1"); }));
    p.exec("UPDATE public.users SET id = 'k2' WHERE id = 'k1'");
    REQUIRE(wait_until([&] { return row_exists(f, "k2"); }));
    CHECK(raw_json(f, "k2")["display_name"] == "Kim");
    CHECK(f.target_value(
              "SELECT deleted_at IS NOT NULL FROM neon_auth.users_sync WHERE id = 'k1'") == "t");
    CHECK(f.stop() == 0);
}

TEST_CASE("TRUNCATE soft-deletes every user of the mapping, in order with other changes",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('a', 'A'), ('b', 'B')");
    REQUIRE(wait_until([&] { return row_exists(f, "a") && row_exists(f, "b"); }));
    p.exec(
        "BEGIN; INSERT INTO public.users (id, name) VALUES ('c', 'C'); TRUNCATE public.users; "
        "INSERT INTO public.users (id, name) VALUES ('d', 'D'); COMMIT;");
    REQUIRE(f.wait_caught_up());
    CHECK(
        f.target_value("SELECT string_agg(id || ':' || (deleted_at IS NOT NULL), ',' ORDER BY id) "
                       "FROM neon_auth.users_sync") == "a:true,b:true,c:true,d:false");
    CHECK(f.stop() == 0);
}

TEST_CASE("columns added and dropped on the provider mid-stream keep the stream going",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('c1', 'One')");
    REQUIRE(wait_until([&] { return row_exists(f, "c1"); }));
    p.exec("ALTER TABLE public.users ADD COLUMN phone text");
    p.exec("INSERT INTO public.users (id, name, phone) VALUES ('c2', 'Two', '+1 555')");
    REQUIRE(wait_until([&] { return row_exists(f, "c2"); }));
    CHECK_FALSE(raw_json(f, "c2").contains("phone"));  // no mapping names it
    p.exec("ALTER TABLE public.users DROP COLUMN phone");
    p.exec("INSERT INTO public.users (id, name) VALUES ('c3', 'Three')");
    REQUIRE(wait_until([&] { return row_exists(f, "c3"); }));
    CHECK(raw_json(f, "c3")["display_name"] == "Three");
    CHECK(f.stop() == 0);
}

TEST_CASE("kill -9 before the status update, then restart: nothing lost, nothing applied twice",
          "[sync][integration]") {
    // A status interval far away: the provider never hears of the applied transactions before
    // the kill, so it re-sends them and the checkpoint alone must prevent a second apply.
    test::SyncOptions options;
    options.status_interval = "1h";
    SyncFixture f(options);
    auto t = f.target();
    f.start();
    REQUIRE(wait_until([&] {
        return f.target_value("SELECT to_regclass('neon_auth.users_sync') IS NOT NULL") == "t";
    }));
    // Every applied version of every user is recorded once by a trigger.
    t.exec(R"(
        CREATE TABLE public.applied (id text, version int);
        CREATE FUNCTION public.record_applied() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO public.applied VALUES (NEW.id, (NEW.raw_json->>'version')::int); RETURN NEW; END $$;
        CREATE TRIGGER record_applied AFTER INSERT OR UPDATE ON neon_auth.users_sync
          FOR EACH ROW EXECUTE FUNCTION public.record_applied();
    )");
    auto p = f.provider();
    for (int v = 1; v <= 5; ++v) {
        if (v == 1)
            p.exec("INSERT INTO public.users (id, name) VALUES ('x', 'X')");
        else
            p.exec("UPDATE public.users SET version = " + std::to_string(v) + " WHERE id = 'x'");
        REQUIRE(wait_until([&] { return raw_json(f, "x")["version"] == v; }));
        f.kill9();
        f.start();
    }
    p.exec("UPDATE public.users SET version = 6 WHERE id = 'x'");
    REQUIRE(wait_until([&] { return raw_json(f, "x")["version"] == 6; }));
    CHECK(f.target_value(
              "SELECT string_agg(version::text, ',' ORDER BY version) FROM public.applied") ==
          "1,2,3,4,5,6");
    CHECK(f.stop() == 0);
}

TEST_CASE("an idle provider with unrelated WAL traffic still advances the slot",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('i1', 'Ida')");
    REQUIRE(wait_until([&] { return row_exists(f, "i1"); }));
    for (int i = 0; i < 20; ++i) p.exec("INSERT INTO public.unrelated (note) VALUES ('noise')");
    CHECK(f.wait_caught_up());
    CHECK(f.stop() == 0);
}

TEST_CASE("a terminated walsender is followed by a reconnect", "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('w1', 'W')");
    REQUIRE(wait_until([&] { return row_exists(f, "w1"); }));
    test::provider_cluster().connect().exec_params(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1",
        {f.slot()});
    p.exec("INSERT INTO public.users (id, name) VALUES ('w2', 'W2')");
    REQUIRE(wait_until([&] { return row_exists(f, "w2"); }));
    CHECK_THAT(f.process().log(), Catch::Contains("reconnecting"));
    CHECK(f.stop() == 0);
}

TEST_CASE("a constraint violation in the target stops authsync and leaves the checkpoint",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('ok', 'Fine')");
    REQUIRE(wait_until([&] { return row_exists(f, "ok"); }));
    auto before = f.target_value("SELECT end_lsn FROM authsync.checkpoint");
    f.target().exec(
        "ALTER TABLE neon_auth.users_sync ADD CONSTRAINT no_evil CHECK (name <> 'evil')");
    p.exec(
        "INSERT INTO public.users (id, name, email) VALUES ('bad', 'evil', "
        "'secret-pii@example.com')");
    CHECK(f.process().wait(20s) == 1);
    CHECK(f.target_value("SELECT end_lsn FROM authsync.checkpoint") == before);
    CHECK_FALSE(row_exists(f, "bad"));
    auto log = f.process().log();
    CHECK_THAT(log, Catch::Contains("23514"));
    CHECK_THAT(log, !Catch::Contains("secret-pii@example.com"));
}

TEST_CASE("SIGTERM stops authsync cleanly with exit code 0", "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, name) SELECT 's' || i, 'S' FROM generate_series(1, 500) i");
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "500"; }));
    auto start = std::chrono::steady_clock::now();
    CHECK(f.stop(10s) == 0);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
    // The final status update reported what was applied.
    auto checkpoint = f.target_value("SELECT end_lsn FROM authsync.checkpoint");
    auto r = test::provider_cluster().connect().exec_params(
        "SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
        {f.slot(), checkpoint});
    CHECK(r.get(0, 0) == "t");
}

TEST_CASE("SIGTERM during start-up is a clean stop once authsync can handle it",
          "[sync][integration]") {
    // The config is a FIFO: authsync's start-up waits in opening it until a writer comes.
    SyncFixture f;
    const auto fifo = f.config_path() + ".fifo";
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    test::Process p({AUTHSYNC_EXE, "run", "--config", fifo}, f.config_path() + ".log");
    p.start();
    // Sent once authsync has SIGTERM blocked (bit 15 of its main thread's SigBlk): one that
    // comes before its main() runs still takes the signal's default action.
    const auto blocked = [&] {
        std::ifstream status("/proc/" + std::to_string(p.pid()) + "/status");
        for (std::string line; std::getline(status, line);) {
            if (line.rfind("SigBlk:", 0) != 0) continue;
            return (std::stoull(line.substr(7), nullptr, 16) >> (SIGTERM - 1) & 1) == 1;
        }
        return false;
    };
    REQUIRE(wait_until(blocked, 10s));
    p.signal(SIGTERM);
    {
        std::ifstream config(f.config_path());
        std::ofstream(fifo) << config.rdbuf();
    }
    CHECK(p.wait(20s) == 0);
    CHECK_THAT(p.log(), Catch::Contains("stop requested"));
}

TEST_CASE("a provider restart is followed by a reconnect", "[sync][integration][restart]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('p1', 'P')");
    REQUIRE(wait_until([&] { return row_exists(f, "p1"); }));
    test::provider_cluster().restart("fast");
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('p2', 'P2')");
    REQUIRE(wait_until([&] { return row_exists(f, "p2"); }));
    test::provider_cluster().restart("immediate");
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('p3', 'P3')");
    REQUIRE(wait_until([&] { return row_exists(f, "p3"); }));
    CHECK(f.process().running());
    CHECK(f.stop() == 0);
}

TEST_CASE("a target restart is followed by a reconnect", "[sync][integration][restart]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('r1', 'R')");
    REQUIRE(wait_until([&] { return row_exists(f, "r1"); }));
    test::target_cluster().stop("fast");
    // Changes made while the target is down wait in the slot.
    p.exec("INSERT INTO public.users (id, name) VALUES ('r2', 'R2')");
    std::this_thread::sleep_for(500ms);
    test::target_cluster().start();
    REQUIRE(wait_until([&] { return row_exists(f, "r2"); }));
    CHECK(f.process().running());
    CHECK(f.stop() == 0);
}

TEST_CASE(
    "values with quotes, backslashes and non-ASCII text arrive byte for byte, in small and large "
    "batches",
    "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    // Alone, a change goes inline (literals in a simple query); in bulk, as bound arrays.
    const std::string tricky = R"(O'Brien "q" back\slash \\ E'x' $1 {a,b} NULL 日本語 ü)";
    p.exec_params("INSERT INTO public.users (id, name) VALUES ('q1', $1)", {tricky});
    REQUIRE(wait_until([&] { return row_exists(f, "q1"); }));
    CHECK(raw_json(f, "q1")["display_name"] == tricky);
    p.exec_params(
        "INSERT INTO public.users (id, name) SELECT 'qb' || i, $1 || i "
        "FROM generate_series(1, 3000) i",
        {tricky});
    REQUIRE(wait_until([&] { return row_exists(f, "qb3000"); }));
    CHECK(raw_json(f, "qb1")["display_name"] == tricky + "1");
    CHECK(raw_json(f, "qb3000")["display_name"] == tricky + "3000");
    CHECK(f.stop() == 0);
}

TEST_CASE("a target crash before its WAL flush loses nothing: flush is reported only when durable",
          "[sync][integration][restart]") {
    // The target's walwriter holds asynchronous commits for up to 10 s.
    test::SlowTargetWalWriter slow;
    auto& target = test::target_cluster();

    SyncFixture f;
    f.start();
    REQUIRE(f.wait_caught_up());
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('c1', 'C')");
    const auto after_insert = f.provider_value("SELECT pg_current_wal_lsn()");
    REQUIRE(wait_until([&] { return row_exists(f, "c1"); }));
    std::this_thread::sleep_for(500ms);  // several durability checks and status updates
    // Committed in the target (visible), not yet flushed there...
    REQUIRE(f.target_value("SELECT pg_current_wal_flush_lsn() < pg_current_wal_insert_lsn()") ==
            "t");
    // ...so the provider has not been told it may forget the change.
    CHECK(f.provider_value("SELECT confirmed_flush_lsn < '" + after_insert +
                           "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + f.slot() +
                           "'") == "t");

    target.stop("immediate");  // the unflushed commit is gone with the crash
    target.start();
    // authsync reconnects, reads the older checkpoint and gets the change again from the slot.
    REQUIRE(wait_until([&] { return row_exists(f, "c1"); }, 60s));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE id = 'c1'") == "1");
    // Once durable, the slot moves past it.
    CHECK(f.wait_caught_up());
    CHECK(f.process().running());
    CHECK(f.stop() == 0);
}

TEST_CASE("a second instance on the same slot waits, then takes over when the first dies",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    // Same slot and target, its own status port.
    auto second_config = f.config_path() + ".second.yaml";
    test::run_shell("sed 's/listen: .*/listen: \"127.0.0.1:" + std::to_string(test::free_port()) +
                    "\"/' " + f.config_path() + " > " + second_config);
    test::Process second({AUTHSYNC_EXE, "run", "--config", second_config},
                         f.config_path() + ".second.log");
    second.start();
    REQUIRE(
        wait_until([&] { return second.log().find("waiting to take over") != std::string::npos; }));
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('s1', 'first')");
    REQUIRE(wait_until([&] { return row_exists(f, "s1"); }));
    f.kill9();
    p.exec("INSERT INTO public.users (id, name) VALUES ('s2', 'second')");
    REQUIRE(wait_until([&] { return row_exists(f, "s2"); }, 60s));
    CHECK(second.running());
    second.signal(SIGTERM);
    CHECK(second.wait(15s) == 0);
}

TEST_CASE("a 1,000,000-row transaction is applied with bounded memory",
          "[sync][integration][large]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, name, email, metadata) SELECT 'big' || i, 'User ' || i, "
        "'user' || i || '@example.com', jsonb_build_object('n', i) FROM generate_series(1, "
        "1000000) i");
    long peak = 0;
    REQUIRE(wait_until(
        [&] {
            peak = std::max(peak, f.process().peak_rss_kb());
            return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "1000000";
        },
        300s));
    peak = std::max(peak, f.process().peak_rss_kb());
    UNSCOPED_INFO("authsync peak RSS: " << peak << " kB");
    WARN("authsync peak RSS for a 1,000,000-row transaction: " << peak << " kB");
    CHECK(peak > 0);
    CHECK(peak < 64 * 1024);
    CHECK(raw_json(f, "big999999")["primary_email"] == "user999999@example.com");
    CHECK(f.stop() == 0);
}

TEST_CASE("SIGTERM while the target is blocked rolls back and exits; nothing is lost",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('b0', 'before')");
    REQUIRE(wait_until([&] { return row_exists(f, "b0"); }));
    auto blocker = f.target();
    blocker.exec("BEGIN; LOCK TABLE neon_auth.users_sync IN ACCESS EXCLUSIVE MODE");
    p.exec("INSERT INTO public.users (id, name) VALUES ('b1', 'blocked')");
    std::this_thread::sleep_for(1s);
    auto start = std::chrono::steady_clock::now();
    CHECK(f.stop(20s) == 0);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
    blocker.exec("ROLLBACK");
    CHECK_FALSE(row_exists(f, "b1"));
    f.start();
    CHECK(wait_until([&] { return row_exists(f, "b1"); }));
    CHECK(f.stop() == 0);
}

// SIGTERM while a large source transaction streams: its chunks went into an open target
// transaction, which rolls back; the restart applies the whole transaction once.
TEST_CASE("a clean stop inside a large source transaction rolls back what it sent",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('b0', 'before')");
    REQUIRE(wait_until([&] { return row_exists(f, "b0"); }));
    std::thread writer([&] {
        f.provider().exec(
            "INSERT INTO public.users (id, name) SELECT 'big' || i, 'User ' || i FROM "
            "generate_series(1, 200000) i");
    });
    // authsync's target session has written chunks in a transaction still open.
    const bool open = wait_until(
        [&] {
            return f.target_value(
                       "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                       "'authsync' AND backend_xid IS NOT NULL") == "1";
        },
        60s);
    const int rc = f.stop();
    writer.join();
    REQUIRE(open);
    CHECK(rc == 0);
    CHECK_THAT(f.process().log(), Catch::Contains("stopped inside the source transaction"));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "1");
    f.start();
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "200001"; },
        120s));
    CHECK(f.stop() == 0);
}

// Issue 15: pipeline mode keeps a batch at one round trip to the target at low load (BEGIN,
// the statements, the checkpoint, COMMIT and the WAL positions go together).
TEST_CASE("at low load each transaction costs one round trip to the target",
          "[sync][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('rt0', 'warm up')");
    REQUIRE(wait_until([&] { return row_exists(f, "rt0"); }));
    REQUIRE(wait_until([&] { return counters(f).value("batches", 0) >= 1; }));
    const auto before = counters(f);
    constexpr int kTransactions = 20;
    for (int i = 1; i <= kTransactions; ++i) {
        const auto id = "rt" + std::to_string(i);
        p.exec("INSERT INTO public.users (id, name) VALUES ('" + id + "', 'one at a time')");
        REQUIRE(wait_until([&] { return row_exists(f, id); }));
    }
    json after;
    REQUIRE(wait_until([&] {
        after = counters(f);
        return after.value("txns_applied", 0) >= before.value("txns_applied", 0) + kTransactions;
    }));
    const auto batches = after.value("batches", 0) - before.value("batches", 0);
    const auto trips = after.value("target_round_trips", 0) - before.value("target_round_trips", 0);
    WARN("low load: " << batches << " batches, " << trips << " round trips to the target");
    CHECK(batches >= kTransactions);  // one at a time: each its own batch
    // One each; at most two (an idle acknowledgement between them also commits, in one).
    CHECK(trips >= batches);
    CHECK(trips <= 2 * batches);
    CHECK(f.stop() == 0);
}

namespace {

// Transactions that bring the target nothing: another authsync's heartbeats on the same
// provider (pgoutput sends every logical message to every slot), `n` of them one at a time.
// Returns the counters once all were received, and sets `last` to the last one's LSN.
json foreign_heartbeats(SyncFixture& f, int n, std::string& last) {
    const auto before = counters(f);
    for (int i = 0; i < n; ++i) {
        last = f.provider_value(
            "SELECT pg_logical_emit_message(true, 'authsync_heartbeat', 'another_slot')");
        std::this_thread::sleep_for(20ms);  // each its own batch
    }
    json after;
    REQUIRE(wait_until([&] {
        after = counters(f);
        return after.value("txns_applied", 0) >= before.value("txns_applied", 0) + n;
    }));
    return after;
}

// Whether the slot's confirmed position and the target's checkpoint are both at `lsn` or past.
void check_slot_and_checkpoint_at(SyncFixture& f, const std::string& lsn) {
    CHECK(f.provider_value("SELECT confirmed_flush_lsn >= '" + lsn +
                           "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + f.slot() +
                           "'") == "t");
    CHECK(f.target_value("SELECT end_lsn >= '" + lsn +
                         "'::pg_lsn FROM authsync.checkpoint WHERE slot = '" + f.slot() + "'") ==
          "t");
}

// Started, with a first user applied (the counters then start after a batch).
void warmed_up(SyncFixture& f) {
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('warm', 'warm up')");
    REQUIRE(wait_until([&] { return row_exists(f, "warm"); }));
    REQUIRE(wait_until([&] { return counters(f).value("batches", 0) >= 1; }));
}

test::SyncOptions without_own_heartbeats(const std::string& status_interval) {
    test::SyncOptions options;
    options.heartbeat_interval = "0s";  // our own heartbeats commit the checkpoint
    options.status_interval = status_interval;
    return options;
}

}  // namespace

// They cost the target no commit each: with N authsyncs on one provider each one's heartbeats
// were a target commit in all N. Their checkpoint is written now and then (status_interval),
// and when the stream idles right after them (no WAL past them), the idle record stores it so
// that the slot still passes them.
TEST_CASE("transactions that bring the target nothing cost it no commit each",
          "[sync][integration]") {
    SyncFixture f(without_own_heartbeats("3s"));
    warmed_up(f);
    const auto before = counters(f);
    constexpr int kTransactions = 30;
    std::string last;
    const auto after = foreign_heartbeats(f, kTransactions, last);
    const auto batches = after.value("batches", 0) - before.value("batches", 0);
    const auto trips = after.value("target_round_trips", 0) - before.value("target_round_trips", 0);
    WARN(kTransactions << " transactions for nobody: " << batches << " batches, " << trips
                       << " round trips to the target");
    CHECK(batches == 0);
    // At most a checkpoint falling due (status_interval) and an idle record.
    CHECK(trips <= 2);
    // Nothing after them: the slot still passes them, and their checkpoint is in the target.
    REQUIRE(f.wait_caught_up(30s));
    check_slot_and_checkpoint_at(f, last);
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('nb1', 'after them')");
    CHECK(wait_until([&] { return row_exists(f, "nb1"); }));
    CHECK(f.stop() == 0);
}

// The same transactions right before a clean stop: the stop stores their checkpoint, and the
// slot stops past them (nothing is replayed at the next start).
TEST_CASE("a clean stop stores what transactions that brought nothing left behind",
          "[sync][integration]") {
    SyncFixture f(without_own_heartbeats("1h"));  // no checkpoint falls due, no idle record
    warmed_up(f);
    std::string last;
    foreign_heartbeats(f, 5, last);
    REQUIRE(f.stop() == 0);
    check_slot_and_checkpoint_at(f, last);
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('cs1', 'after the stop')");
    CHECK(wait_until([&] { return row_exists(f, "cs1"); }));
    CHECK(f.stop() == 0);
}

// A backlog of small transactions goes in whole batches, each in one round trip, none over
// apply.batch_max_rows: a batch reaching the limit waits for its Commit instead of taking the
// chunk path (a chunk pipeline, then the commit's: two round trips, and the reader waiting
// while the target executes).
TEST_CASE("a backlog of small transactions goes in whole batches of at most batch_max_rows",
          "[sync][integration]") {
    test::SyncOptions options;
    options.extra_yaml = "apply:\n  batch_max_rows: 50\n";
    options.heartbeat_interval = "0s";  // only our transactions count as applied
    SyncFixture f(options);
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('bl0', 'warm up')");
    REQUIRE(wait_until([&] { return row_exists(f, "bl0"); }));
    REQUIRE(f.stop() == 0);
    constexpr int kTransactions = 1000;
    p.exec("DO $$ BEGIN FOR i IN 1.." + std::to_string(kTransactions) +
           " LOOP INSERT INTO public.users (id, name) VALUES ('bl' || i, 'backlog'); COMMIT; "
           "END LOOP; END $$");
    f.start();
    json after;
    REQUIRE(wait_until([&] {
        after = counters(f);
        return after.value("txns_applied", 0) >= kTransactions;
    }));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE id LIKE 'bl%'") ==
          std::to_string(kTransactions + 1));
    const auto batches = after.value("batches", 0);
    const auto trips = after.value("target_round_trips", 0);
    WARN("backlog of " << kTransactions << " transactions: " << batches << " batches, " << trips
                       << " round trips to the target");
    CHECK(batches >= kTransactions / 50);  // at most 50 rows each, on average
    // One round trip each (an idle acknowledgement may add one or two of its own).
    CHECK(trips >= batches);
    CHECK(trips <= batches + 2);

    // A transaction larger than the limit still goes in chunks into one target transaction
    // (memory stays bounded): 300 rows, chunks at 100 (twice the limit before the first), then
    // every 50, then the COMMIT: six round trips for one batch.
    p.exec(
        "INSERT INTO public.users (id, name) SELECT 'big' || i, 'large' FROM "
        "generate_series(1, 300) i");
    json large;
    REQUIRE(wait_until([&] {
        large = counters(f);
        return large.value("txns_applied", 0) >= kTransactions + 1;
    }));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE id LIKE 'big%'") ==
          "300");
    const auto large_trips =
        large.value("target_round_trips", 0) - after.value("target_round_trips", 0);
    WARN("a 300-row transaction: " << large_trips << " round trips to the target");
    CHECK(large.value("batches", 0) - batches == 1);
    CHECK(large_trips >= 6);
    CHECK(large_trips <= 8);
    CHECK(f.stop() == 0);
}
