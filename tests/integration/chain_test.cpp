// Issue 15, W4: at low load a batch goes behind the one still executing in the target (chained
// pipelines), and never commits unless that one did.
#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange
// (This comment ends the include block, so that clang-format does not sort Asio above it.)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "authsync/pg/async_connection.hpp"
#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using nlohmann::json;
using test::row_exists;
using test::SyncFixture;
using test::wait_until;

namespace {

std::uint64_t chained(SyncFixture& f) {
    return f.status().value("counters", json::object()).value("batches_chained", 0ULL);
}

// Started, with a first user applied: its checkpoint row is in the target.
void warmed_up(SyncFixture& f) {
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('warm', 'warm up')");
    REQUIRE(wait_until([&] { return row_exists(f, "warm"); }));
}

// The target takes 0.8 s over a user named `name`: in the row's INSERT (`when` = "row") or in
// the COMMIT (`when` = "commit", a deferred constraint trigger), then fails with `sqlstate`
// (none: it does not fail).
void slow_on(SyncFixture& f, const std::string& name, const std::string& when,
             const std::string& sqlstate = "") {
    const std::string fail =
        sqlstate.empty() ? "" : "RAISE EXCEPTION 'rejected' USING ERRCODE = '" + sqlstate + "';";
    f.target().exec(
        "CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.raw_json ->> 'display_name' = '" +
        name + "' THEN PERFORM pg_sleep(0.8); " + fail + " END IF; RETURN NEW; END $$");
    f.target().exec(when == "row"
                        ? "CREATE TRIGGER slow BEFORE INSERT ON neon_auth.users_sync FOR EACH "
                          "ROW EXECUTE FUNCTION public.slow()"
                        : "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON neon_auth.users_sync "
                          "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "
                          "public.slow()");
}

// One provider transaction, then another while the target still executes the first.
void two_transactions(SyncFixture& f, const std::string& first_name,
                      const std::string& behind_name = "b") {
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('first', '" + first_name + "')");
    std::this_thread::sleep_for(200ms);  // sent, and executing in the target
    p.exec("INSERT INTO public.users (id, name) VALUES ('behind', '" + behind_name + "')");
}

std::string checkpoint(SyncFixture& f) {
    return f.target_value("SELECT end_lsn FROM authsync.checkpoint WHERE slot = '" + f.slot() +
                          "'");
}

// The slot never passes the target's checkpoint, and here (caught up) reaches the provider's WAL.
bool checkpoint_holds_slot(SyncFixture& f) {
    const auto confirmed = f.provider_value(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '" + f.slot() +
        "'");
    return f.target_value("SELECT end_lsn >= '" + confirmed +
                          "'::pg_lsn FROM authsync.checkpoint WHERE slot = '" + f.slot() + "'") ==
           "t";
}

// Two pipelines on the wire before either's results are read, the first failing inside its
// explicit transaction: what the chain's failure handling relies on. Returns what each query
// became ("ok", "skipped" or its SQLSTATE), then the pipelines unread at each step, then a
// plain query's answer once both are read (checked by the caller).
std::string outcome_of(const pg::PipelineOutcome& o) {
    if (o.error) return o.error->sqlstate();
    return o.skipped ? "skipped" : "ok";
}

pg::PipelineQuery plain_query(std::string sql) {
    pg::PipelineQuery q;
    q.sql = std::move(sql);
    return q;
}

boost::asio::awaitable<std::vector<std::string>> two_pipelines(std::string dsn) {
    pg::AsyncConnection conn(co_await boost::asio::this_coro::executor);
    co_await conn.connect(dsn, "authsync-test");
    std::vector<std::string> seen;
    // Named, not braced in the co_await: GCC 12 cannot keep an initializer list's array there.
    std::vector<pg::PipelineQuery> failing, behind;
    for (const char* sql : {"BEGIN", "SELECT 1 / 0", "COMMIT"}) failing.push_back(plain_query(sql));
    for (const char* sql : {"BEGIN", "SELECT 1", "COMMIT"}) behind.push_back(plain_query(sql));
    co_await conn.pipeline_send(failing);
    co_await conn.pipeline_send(behind);
    seen.push_back(std::to_string(conn.pipelines_unread()));
    for (int i = 0; i < 2; ++i) {
        for (const auto& o : co_await conn.pipeline_results()) seen.push_back(outcome_of(o));
        seen.push_back(std::to_string(conn.pipelines_unread()));
    }
    // Out of pipeline mode: plain queries go again.
    co_await conn.query("ROLLBACK");
    auto r = co_await conn.query("SELECT 2");
    seen.emplace_back(r.get(0, 0));
    co_return seen;
}

}  // namespace

TEST_CASE("pipelines sent behind one another run in order; a failure skips only its own",
          "[chain][integration]") {
    auto& cluster = test::provider_cluster();
    boost::asio::io_context io;
    std::exception_ptr failure;
    std::vector<std::string> seen;
    boost::asio::co_spawn(io, two_pipelines(cluster.dsn()),
                          [&](std::exception_ptr e, std::vector<std::string> s) {
                              failure = e;
                              seen = std::move(s);
                          });
    io.run();
    if (failure) std::rethrow_exception(failure);
    // 2 unread; the first: BEGIN ran, 1/0 failed, COMMIT skipped; 1 unread; the second began in
    // the first's aborted transaction: its BEGIN failed (25P02), the rest skipped; 0 unread.
    const std::vector<std::string> expected{"2",     "ok",      "22012",   "skipped", "1",
                                            "25P02", "skipped", "skipped", "0",       "2"};
    CHECK(seen == expected);
}

TEST_CASE("at low load a transaction goes behind the batch still executing",
          "[chain][integration]") {
    SyncFixture f;
    warmed_up(f);
    slow_on(f, "slow", "row");
    const auto before = chained(f);
    two_transactions(f, "slow");
    REQUIRE(f.wait_caught_up());
    CHECK(row_exists(f, "first"));
    CHECK(row_exists(f, "behind"));
    CHECK(chained(f) >= before + 1);
    // In order: the one behind committed after the first.
    CHECK(f.target_value("SELECT string_agg(id, ',' ORDER BY xmin::text::bigint) FROM "
                         "neon_auth.users_sync") == "warm,first,behind");
    CHECK(checkpoint_holds_slot(f));
    CHECK(f.stop() == 0);
}

// The batch before fails in its COMMIT, which closes its transaction: without the guard, the
// batch behind would begin and commit past it.
TEST_CASE("a batch behind one whose COMMIT fails does not commit", "[chain][integration]") {
    SyncFixture f;
    warmed_up(f);
    const auto warm_checkpoint = checkpoint(f);
    slow_on(f, "fails-at-commit", "commit", "P0001");
    two_transactions(f, "fails-at-commit");
    CHECK(f.process().wait(20s) == 1);
    const auto log = f.process().log();
    CHECK_THAT(log, Catch::Contains("sent behind the batch executing"));
    CHECK_THAT(log, Catch::Contains("P0001"));
    CHECK_FALSE(row_exists(f, "first"));
    CHECK_FALSE(row_exists(f, "behind"));
    CHECK(checkpoint(f) == warm_checkpoint);
    // The trigger gone, both apply, once.
    f.target().exec("DROP TRIGGER slow ON neon_auth.users_sync");
    f.start();
    REQUIRE(f.wait_caught_up());
    CHECK(f.target_value("SELECT string_agg(id, ',' ORDER BY id) FROM neon_auth.users_sync") ==
          "behind,first,warm");
    CHECK(f.stop() == 0);
}

// The target rejects a change of the batch before: the batch behind was skipped (it began in
// an aborted transaction); the one before goes again change by change, its culprit set aside,
// then the one behind.
TEST_CASE("a change rejected in a batch with another behind it is set aside and both apply",
          "[chain][integration]") {
    test::SyncOptions options;
    options.extra_yaml = "apply:\n  on_error: dead_letter\n";
    SyncFixture f(options);
    warmed_up(f);
    slow_on(f, "slow-evil", "row", "23514");
    const auto before = chained(f);
    two_transactions(f, "slow-evil");
    REQUIRE(f.wait_caught_up());
    CHECK(chained(f) >= before + 1);
    CHECK_FALSE(row_exists(f, "first"));
    CHECK(row_exists(f, "behind"));
    CHECK(f.target_value("SELECT key || ' ' || sqlstate FROM authsync.dead_letter") ==
          "first 23514");
    CHECK(f.status()["counters"]["dead_letters"] == 1);
    CHECK(checkpoint_holds_slot(f));
    CHECK(f.stop() == 0);
}

// A dead letter names the source transaction of its change, though the stream goes on while
// the batch is replayed: a transaction decoded meanwhile does not lend it its LSN.
TEST_CASE("a dead letter set aside in a replay names its own transaction", "[chain][integration]") {
    test::SyncOptions options;
    options.extra_yaml = "apply:\n  on_error: dead_letter\n";
    SyncFixture f(options);
    warmed_up(f);
    // 0.8 s, then rejected: at the first attempt and again in the replay.
    slow_on(f, "slow-evil", "row", "23514");
    auto p = f.provider();
    const auto before = f.provider_value("SELECT pg_current_wal_insert_lsn()::text");
    p.exec("INSERT INTO public.users (id, name) VALUES ('first', 'slow-evil')");
    const auto after = f.provider_value("SELECT pg_current_wal_insert_lsn()::text");
    // During the replay (0.8 s to 1.6 s after 'first' was sent), another transaction.
    std::this_thread::sleep_for(1200ms);
    p.exec("INSERT INTO public.users (id, name) VALUES ('later', 'l')");
    REQUIRE(f.wait_caught_up());
    CHECK(row_exists(f, "later"));
    CHECK(f.target_value("SELECT key FROM authsync.dead_letter") == "first");
    // 'first' committed between the two WAL positions; 'later' after them.
    CHECK(f.target_value("SELECT lsn > '" + before + "'::pg_lsn AND lsn < '" + after +
                         "'::pg_lsn FROM authsync.dead_letter") == "t");
    CHECK(f.stop() == 0);
}

// The target rejects a change of the batch behind (the one before committed): that batch goes
// again change by change, its culprit set aside.
TEST_CASE("a change rejected in the batch behind is set aside and the rest applies once",
          "[chain][integration]") {
    test::SyncOptions options;
    options.extra_yaml = "apply:\n  on_error: dead_letter\n";
    SyncFixture f(options);
    warmed_up(f);
    slow_on(f, "slow", "row");
    f.target().exec(
        "ALTER TABLE neon_auth.users_sync ADD CONSTRAINT no_evil CHECK (name <> 'evil')");
    const auto before = chained(f);
    two_transactions(f, "slow", "evil");
    REQUIRE(f.wait_caught_up());
    CHECK(chained(f) >= before + 1);
    CHECK(row_exists(f, "first"));
    CHECK_FALSE(row_exists(f, "behind"));
    CHECK(f.target_value("SELECT key || ' ' || sqlstate FROM authsync.dead_letter") ==
          "behind 23514");
    CHECK(f.status()["counters"]["dead_letters"] == 1);
    CHECK(checkpoint_holds_slot(f));
    CHECK(f.stop() == 0);
}

// SIGTERM while a batch executes and another waits behind it: both commit, in order, and a
// restart applies nothing again.
TEST_CASE("a clean stop with a batch behind another commits both", "[chain][integration]") {
    SyncFixture f;
    warmed_up(f);
    slow_on(f, "slow", "row");
    const auto before = chained(f);
    two_transactions(f, "slow");
    std::this_thread::sleep_for(100ms);  // the one behind has gone
    CHECK(chained(f) >= before + 1);
    CHECK(f.stop() == 0);
    CHECK(row_exists(f, "first"));
    CHECK(row_exists(f, "behind"));
    const auto stopped_at = checkpoint(f);
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('after', 'c')");
    REQUIRE(wait_until([&] { return row_exists(f, "after"); }));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "4");
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE xmin::text::bigint > "
                         "(SELECT xmin::text::bigint FROM neon_auth.users_sync WHERE id = "
                         "'behind')") == "1");
    CHECK(checkpoint(f) != stopped_at);
    CHECK(f.stop() == 0);
}
