// The initial copy and resync, against real servers.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <random>
#include <thread>

#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using test::SyncFixture;
using test::wait_until;

namespace {

// Live users as "id:name:email:version" lines, sorted, from each side.
const char* kProviderState =
    "SELECT coalesce(string_agg(id || ':' || coalesce(name, '-') || ':' || coalesce(email, '-') "
    "|| ':' || version, E'\\n' ORDER BY id), '') FROM public.users";
const char* kTargetState =
    "SELECT coalesce(string_agg(id || ':' || coalesce(name, '-') || ':' || coalesce(email, '-') "
    "|| ':' || (raw_json->>'version'), E'\\n' ORDER BY id), '') FROM neon_auth.users_sync "
    "WHERE deleted_at IS NULL";

void add_users(SyncFixture& f, int from, int to) {
    f.provider().exec(
        "INSERT INTO public.users (id, name, email, metadata) SELECT 'u' || i, "
        "'User ' || i, 'user' || i || '@example.com', jsonb_build_object('i', i) "
        "FROM generate_series(" +
        std::to_string(from) + ", " + std::to_string(to) + ") i");
}

bool in_sync(SyncFixture& f) {
    return f.provider_value(kProviderState) == f.target_value(kTargetState);
}

}  // namespace

TEST_CASE("existing users are copied before streaming starts", "[backfill][integration]") {
    SyncFixture f;
    add_users(f, 1, 5000);
    f.provider().exec("UPDATE public.users SET email = NULL, version = 2 WHERE id = 'u7'");
    f.start();
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "5000"; }));
    CHECK(in_sync(f));
    CHECK(f.target_value(
              "SELECT raw_json->>'server_metadata' FROM neon_auth.users_sync WHERE id = 'u42'") ==
          "{\"i\": 42}");
    // And the stream continues from the copy's consistent point.
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('after', 'After')");
    f.provider().exec("DELETE FROM public.users WHERE id = 'u1'");
    REQUIRE(f.wait_caught_up());
    CHECK(in_sync(f));
    CHECK_THAT(f.process().log(), Catch::Contains("copied 5000 rows of public.users"));
    // /status keeps the copy's progress.
    auto status =
        nlohmann::json::parse(test::run_shell_output("curl -s -m 5 " + f.status_url() + "/status"));
    CHECK(status["snapshot"]["public.users"]["rows_copied"] == 5000);
    CHECK(status["snapshot"]["public.users"]["rows_estimated"].is_number());
    CHECK(f.stop() == 0);
}

TEST_CASE("changes made during the copy are neither lost nor doubled", "[backfill][integration]") {
    SyncFixture f;
    add_users(f, 1, 200000);
    std::atomic<bool> done{false};
    std::atomic<int> ops{0};
    std::thread writer([&] {
        auto conn = f.provider();
        std::mt19937 rng(42);
        std::uniform_int_distribution<int> id(1, 200000), op(0, 9);
        int next = 300000;
        while (!done) {
            auto k = std::to_string(id(rng));
            switch (op(rng)) {
                case 0: conn.exec("DELETE FROM public.users WHERE id = 'u" + k + "'"); break;
                case 1:
                    conn.exec("INSERT INTO public.users (id, name) VALUES ('u" +
                              std::to_string(next++) + "', 'new')");
                    break;
                default:
                    conn.exec(
                        "UPDATE public.users SET version = version + 1, name = 'changed' "
                        "WHERE id = 'u" +
                        k + "'");
            }
            ++ops;
            // A steady trickle, not a flood: the point is overlap with the copy.
            std::this_thread::sleep_for(1ms);
        }
    });
    // Whatever fails below, the writer stops and is joined first.
    struct StopWriter {
        std::atomic<bool>& done;
        std::thread& writer;
        ~StopWriter() {
            done = true;
            if (writer.joinable()) writer.join();
        }
    } stop_writer{done, writer};
    // Not start(): the slot streams only after the copy, which takes long under sanitizers.
    f.start_unchecked();
    // Keep writing until the copy is over, and a little after.
    wait_until([&] { return f.process().log().find("initial copy done") != std::string::npos; },
               300s);
    std::this_thread::sleep_for(500ms);
    done = true;
    writer.join();
    INFO("writer operations: " << ops.load());
    CHECK(ops.load() > 10);
    // Generous: under the sanitizers the same work takes several times longer.
    REQUIRE(f.wait_caught_up(300s));
    CHECK(in_sync(f));
    CHECK(f.stop() == 0);
}

TEST_CASE("a copy killed halfway starts over cleanly", "[backfill][integration]") {
    SyncFixture f;
    add_users(f, 1, 300000);
    f.start_unchecked();
    REQUIRE(wait_until(
        [&] { return f.process().log().find("copying existing users") != std::string::npos; }));
    std::this_thread::sleep_for(300ms);
    REQUIRE(f.process().log().find("initial copy done") == std::string::npos);
    f.kill9();
    // Nothing was committed, so nothing looks done.
    CHECK(f.target_value("SELECT count(*) FROM authsync.checkpoint") == "0");
    f.provider().exec("DELETE FROM public.users WHERE id IN ('u1', 'u2')");
    f.start_unchecked();
    REQUIRE(wait_until(
        [&] { return f.process().log().find("initial copy done") != std::string::npos; }, 120s));
    REQUIRE(f.wait_caught_up(60s));
    CHECK(in_sync(f));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "299998");
    CHECK_THAT(f.process().log(), Catch::Contains("dropped slot"));
    CHECK(f.stop() == 0);
}

TEST_CASE("snapshot: never streams only what changes", "[backfill][integration]") {
    test::SyncOptions options;
    options.snapshot = "never";
    SyncFixture f(options);
    add_users(f, 1, 10);
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('new', 'New')");
    REQUIRE(f.wait_caught_up());
    CHECK(f.target_value("SELECT string_agg(id, ',') FROM neon_auth.users_sync") == "new");
    CHECK(f.stop() == 0);
}

TEST_CASE("a lost slot stops with advice; resync repairs it and reconciles deletions",
          "[backfill][integration]") {
    test::PgCluster small("small-wal", {"max_slot_wal_keep_size = 1MB", "wal_keep_size = 0",
                                        "max_wal_size = 32MB", "min_wal_size = 32MB"});
    test::SyncOptions options;
    options.provider = &small;
    SyncFixture f(options);
    add_users(f, 1, 100);
    f.start();
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "100"; }));
    REQUIRE(f.stop() == 0);

    // While authsync is stopped: users change, and enough WAL goes by to invalidate the slot.
    f.provider().exec("DELETE FROM public.users WHERE id IN ('u1', 'u2', 'u3')");
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('while-away', 'W')");
    auto admin = small.connect(f.provider_db);
    for (int i = 0; i < 6; ++i) {
        admin.exec(
            "CREATE TABLE IF NOT EXISTS filler (x text); INSERT INTO filler SELECT repeat('x', "
            "1000) FROM generate_series(1, 5000)");
        admin.exec("SELECT pg_switch_wal()");
        admin.exec("CHECKPOINT");
    }
    REQUIRE(wait_until(
        [&] {
            auto r = small.connect().exec_params(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
                pg::params(f.slot()));
            return r.rows() == 1 && r.get(0, 0) == "lost";
        },
        30s));

    f.start_unchecked();
    CHECK(f.process().wait(30s) == 1);
    CHECK_THAT(f.process().log(), Catch::Contains("is lost") && Catch::Contains("authsync resync"));

    auto resync = test::run_shell_output(std::string(AUTHSYNC_EXE) + " resync --config " +
                                         f.config_path() + " 2>&1; echo rc=$?");
    INFO(resync);
    CHECK_THAT(resync, Catch::Contains("rc=0"));
    CHECK(f.target_value("SELECT string_agg(id, ',' ORDER BY id) FROM neon_auth.users_sync "
                         "WHERE deleted_at IS NOT NULL") == "u1,u2,u3");
    CHECK(in_sync(f));
    // And streaming resumes.
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('back', 'B')");
    REQUIRE(f.wait_caught_up());
    CHECK(in_sync(f));
    CHECK(f.stop() == 0);
}
