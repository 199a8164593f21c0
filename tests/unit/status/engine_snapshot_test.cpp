#include <catch2/catch.hpp>

#include "authsync/engine/status.hpp"

using namespace authsync;
using authsync::engine::EngineStatus;
using authsync::engine::make_snapshot;

namespace {

PgTimestamp seconds_after(PgTimestamp t, double seconds) {
    return PgTimestamp{t.micros + static_cast<std::int64_t>(seconds * 1e6)};
}

}  // namespace

TEST_CASE("lag_seconds counts from the oldest transaction not yet committed in the target",
          "[status][engine]") {
    const auto t0 = PgTimestamp::from_unix_micros(1'714'564'800'000'000);
    EngineStatus st;

    SECTION("nothing pending: no lag") {
        CHECK(make_snapshot(st, "slot", "pub", seconds_after(t0, 10)).lag_seconds == 0);
    }
    SECTION("received, not sent") {
        st.oldest_pending_commit_time = t0;
        CHECK(make_snapshot(st, "slot", "pub", seconds_after(t0, 3)).lag_seconds == Approx(3));
    }
    SECTION("sent and waiting in the target, nothing received since") {
        // The batch left the reader, but its commit has not been read: still lag.
        st.oldest_sent_commit_time = t0;
        CHECK(make_snapshot(st, "slot", "pub", seconds_after(t0, 5)).lag_seconds == Approx(5));
    }
    SECTION("a sent batch is older than what was received after it") {
        st.oldest_sent_commit_time = t0;
        st.oldest_pending_commit_time = seconds_after(t0, 4);
        CHECK(make_snapshot(st, "slot", "pub", seconds_after(t0, 6)).lag_seconds == Approx(6));
    }
    SECTION("a commit time ahead of the clock is no lag, not a negative one") {
        st.oldest_pending_commit_time = seconds_after(t0, 2);
        CHECK(make_snapshot(st, "slot", "pub", t0).lag_seconds == 0);
    }
}

TEST_CASE("a sink of several targets shows them together", "[status][transport]") {
    status::Snapshot a;
    a.state = "streaming";
    a.targets["t0"].durable_lsn = Lsn(0x100);
    a.rows_applied["public.users"].upserts = 3;
    a.txns_applied = 5;
    a.transport.role = "sink";
    a.transport.frames = 4;
    a.transport.copies = 1;
    a.lag_bytes = 10;
    status::Snapshot b;
    b.state = "snapshotting";
    b.targets["t1"].durable_lsn = Lsn(0x200);
    b.rows_applied["public.users"].upserts = 2;
    b.rows_applied["public.users"].deletes = 1;
    b.txns_applied = 7;
    b.transport.role = "sink";
    b.transport.frames = 6;
    b.transport.pending = 9;
    b.transport.marks = 2;
    b.lag_bytes = 30;
    b.last_error = "target t1: connection lost";
    b.last_error_at = PgTimestamp::from_unix_micros(1'714'564'800'000'000);
    status::merge_into(a, b);
    CHECK(a.targets.size() == 2);
    CHECK(a.targets["t1"].durable_lsn == Lsn(0x200));
    CHECK(a.rows_applied["public.users"].upserts == 5);
    CHECK(a.rows_applied["public.users"].deletes == 1);
    CHECK(a.txns_applied == 12);
    CHECK(a.transport.frames == 10);
    CHECK(a.transport.pending == 9);
    CHECK(a.transport.marks == 2);
    CHECK(a.transport.copies == 1);
    CHECK(a.lag_bytes == 30);
    CHECK(a.state == "snapshotting");  // what is not streaming shows
    CHECK(a.last_error == "target t1: connection lost");
}
