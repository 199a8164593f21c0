#include "authsync/pipeline/flush_tracker.hpp"

#include <catch2/catch.hpp>

using namespace authsync;
using namespace authsync::pipeline;
using namespace std::chrono_literals;

namespace {

Lsn at(std::uint64_t v) {
    return Lsn(v);
}

// A tracker of `n` writers started with no checkpoint and a slot that confirmed nothing.
FlushTracker fresh(std::size_t n) {
    FlushTracker t(n);
    for (std::size_t w = 0; w < n; ++w) t.start_writer(w, Lsn{}, Lsn{});
    t.start(std::nullopt);
    return t;
}

}  // namespace

TEST_CASE("a commit is acknowledged only once the target has flushed past it", "[pipeline]") {
    auto t = fresh(1);
    t.received(at(0x100));
    t.committed(0, at(0x100), at(0x5000));
    CHECK(t.acknowledged() == Lsn{});
    CHECK(t.written() == at(0x100));
    CHECK(t.has_unflushed());
    t.target_flushed(0, at(0x4fff));
    CHECK(t.acknowledged() == Lsn{});
    t.target_flushed(0, at(0x5000));
    CHECK(t.acknowledged() == at(0x100));
    CHECK_FALSE(t.has_unflushed());
}

TEST_CASE("commits become durable in order: a later flush covers every earlier commit",
          "[pipeline]") {
    auto t = fresh(1);
    t.committed(0, at(0x100), at(0x5000));
    t.committed(0, at(0x200), at(0x6000));
    t.committed(0, at(0x300), at(0x7000));
    t.target_flushed(0, at(0x6500));
    CHECK(t.acknowledged() == at(0x200));
    t.target_flushed(0, at(0x9000));
    CHECK(t.acknowledged() == at(0x300));
    CHECK(t.committed_lsn() == at(0x300));
}

TEST_CASE("with several writers the minimum of what each holds durable is acknowledged",
          "[pipeline]") {
    auto t = fresh(3);
    // Batch 1 (end 0x100): writers 0 and 1 wrote, writer 2 had nothing.
    t.committed(0, at(0x100), at(0x5000));
    t.committed(1, at(0x100), at(0x5100));
    t.committed(2, at(0x100), std::nullopt);
    t.target_flushed(0, at(0x5050));
    t.target_flushed(2, at(0x5050));
    CHECK(t.acknowledged() == Lsn{});  // writer 1's commit is not flushed yet
    t.target_flushed(1, at(0x5100));
    CHECK(t.acknowledged() == at(0x100));
    // Batch 2 (end 0x200): only writer 2 wrote; it is the one that holds the report back.
    t.committed(0, at(0x200), std::nullopt);
    t.committed(1, at(0x200), std::nullopt);
    t.committed(2, at(0x200), at(0x6000));
    CHECK(t.acknowledged() == at(0x100));
    t.target_flushed(2, at(0x6000));
    CHECK(t.acknowledged() == at(0x200));
}

TEST_CASE("a writer with nothing to write waits for its own earlier commits", "[pipeline]") {
    auto t = fresh(2);
    t.committed(0, at(0x100), at(0x5000));
    t.committed(1, at(0x100), at(0x5000));
    t.committed(0, at(0x200), std::nullopt);  // writer 0: nothing in batch 2
    t.committed(1, at(0x200), at(0x6000));
    t.target_flushed(1, at(0x7000));
    // Writer 0's batch-2 entry sits behind its unflushed batch-1 commit.
    CHECK(t.acknowledged() == Lsn{});
    t.target_flushed(0, at(0x5000));
    CHECK(t.acknowledged() == at(0x200));
}

TEST_CASE("what is acknowledged never moves back", "[pipeline]") {
    FlushTracker t(2);
    t.start_writer(0, at(0x500), at(0x9000));
    t.start_writer(1, at(0x300), at(0x9000));
    t.start(at(0x450));
    // Writer 1's checkpoint is below the slot's confirmed position: it had nothing to write in
    // between. The report starts at what the slot confirmed, not at the lowest checkpoint.
    CHECK(t.acknowledged() == at(0x450));
    t.target_flushed(1, at(0x9000));
    CHECK(t.acknowledged() == at(0x450));
    t.target_flushed(0, at(0x9000));
    CHECK(t.acknowledged() == at(0x450));  // writer 1 covers only 0x300 so far
    t.committed(0, at(0x600), std::nullopt);
    t.committed(1, at(0x600), at(0x9100));
    t.target_flushed(1, at(0x9100));
    CHECK(t.acknowledged() == at(0x600));
}

TEST_CASE(
    "a stored checkpoint is acknowledged only once the target flushed past its position "
    "at start",
    "[pipeline]") {
    FlushTracker t(1);
    // The checkpoint 0x500 may have been committed asynchronously by a process that died.
    t.start_writer(0, at(0x500), at(0x8000));
    t.start(at(0x200));
    CHECK(t.acknowledged() == at(0x200));  // the slot's own confirmed position, no more
    CHECK(t.has_unflushed());
    t.target_flushed(0, at(0x7fff));
    CHECK(t.acknowledged() == at(0x200));
    t.target_flushed(0, at(0x8000));
    CHECK(t.acknowledged() == at(0x500));
    CHECK(t.written() == at(0x500));
}

TEST_CASE("a checkpoint the slot already confirmed needs no flush", "[pipeline]") {
    FlushTracker t(1);
    t.start_writer(0, at(0x500), at(0x8000));
    t.start(at(0x500));
    CHECK(t.acknowledged() == at(0x500));
    CHECK_FALSE(t.has_unflushed());
}

TEST_CASE("streaming resumes at the lowest checkpoint and each writer skips what its own covers",
          "[pipeline]") {
    FlushTracker t(3);
    t.start_writer(0, at(0x500), at(0x9000));
    t.start_writer(1, at(0x300), at(0x9000));
    t.start_writer(2, at(0x400), at(0x9000));
    t.start(at(0x300));
    CHECK(t.resume_lsn() == at(0x300));
    CHECK(t.skips(0, at(0x4ff)));
    CHECK_FALSE(t.skips(0, at(0x500)));
    CHECK_FALSE(t.skips(1, at(0x300)));
    CHECK(t.skips(2, at(0x3ff)));
    CHECK_FALSE(t.skips(2, at(0x480)));
    // A commit moves the writer's checkpoint; one with nothing written does not.
    t.committed(1, at(0x600), at(0x9100));
    t.committed(2, at(0x600), std::nullopt);
    CHECK(t.checkpoint(1) == at(0x600));
    CHECK(t.checkpoint(2) == at(0x400));
}

TEST_CASE(
    "an idle keepalive is recorded only when everything is applied and durable, at most "
    "once per interval",
    "[pipeline]") {
    auto t = fresh(2);
    const auto t0 = FlushTracker::Clock::time_point{} + 1h;
    t.committed(0, at(0x100), at(0x5000));
    t.committed(1, at(0x100), std::nullopt);
    // A commit waits for the flush.
    CHECK_FALSE(t.idle_record(at(0x900), true, t0, 10s));
    t.target_flushed(0, at(0x5000));
    // A batch or transaction is open.
    CHECK_FALSE(t.idle_record(at(0x900), false, t0, 10s));
    // Nothing new since the last commit.
    CHECK_FALSE(t.idle_record(at(0x100), true, t0, 10s));
    auto record = t.idle_record(at(0x900), true, t0, 10s);
    REQUIRE(record);
    CHECK(*record == at(0x900));
    t.committed(0, at(0x900), at(0x6000));
    t.committed(1, at(0x900), at(0x6000));
    CHECK(t.acknowledged() == at(0x100));  // recorded, not yet durable
    t.target_flushed(0, at(0x6000));
    t.target_flushed(1, at(0x6000));
    CHECK(t.acknowledged() == at(0x900));
    CHECK_FALSE(t.idle_record(at(0xa00), true, t0 + 5s, 10s));
    CHECK(t.idle_record(at(0xa00), true, t0 + 10s, 10s));
}

// Transactions that brought the target nothing (e.g. other slots' heartbeats) were passed
// through without a checkpoint commit: when the stream then idles with no WAL after them, the
// idle record writes the checkpoint that lets the slot pass them.
TEST_CASE("an idle record stores what transactions that brought nothing left behind",
          "[pipeline]") {
    auto t = fresh(1);
    const auto t0 = FlushTracker::Clock::time_point{} + 1h;
    t.received(at(0x100));
    t.committed(0, at(0x100), at(0x5000));
    t.target_flushed(0, at(0x5000));
    CHECK(t.acknowledged() == at(0x100));
    // 0x200: nothing to write, no checkpoint commit.
    t.received(at(0x200));
    t.committed(0, at(0x200), std::nullopt);
    t.target_flushed(0, at(0x5000));
    CHECK(t.acknowledged() == at(0x100));
    CHECK(t.stored_behind(0));
    // The provider's WAL ends at that transaction's end: still recorded, at what was covered.
    auto record = t.idle_record(at(0x200), true, t0, 10s);
    REQUIRE(record);
    CHECK(*record == at(0x200));
    t.committed(0, at(0x200), at(0x5100));
    t.target_flushed(0, at(0x5100));
    CHECK(t.acknowledged() == at(0x200));
    CHECK_FALSE(t.stored_behind(0));
    // Caught up and stored: nothing more to record at the same WAL end.
    CHECK_FALSE(t.idle_record(at(0x200), true, t0 + 20s, 10s));
}

// A target that joined with a copy starts ahead of the others (engine: copy_joining_target):
// its checkpoint is not something the stream has sent. An idle record below it would write
// it into the other targets' rows, and they would skip what lies between.
TEST_CASE("an idle record never records what the provider has not sent", "[pipeline]") {
    FlushTracker t(std::vector<std::size_t>{0, 1});
    t.start_writer(0, at(0x100), at(0x7000));
    t.start_writer(1, at(0x900), at(0x8000));
    t.start(at(0x100));
    t.target_flushed(0, at(0x7000));
    t.target_flushed(1, at(0x8000));
    const auto t0 = FlushTracker::Clock::time_point{} + 1h;
    // 0x200 brought nobody anything: target 0's rows fall behind it.
    t.received(at(0x200));
    t.committed(0, at(0x200), std::nullopt);
    t.committed(1, at(0x200), std::nullopt);
    t.target_flushed(0, at(0x7000));
    REQUIRE(t.stored_behind(0));
    CHECK_FALSE(t.idle_record(at(0x250), true, t0, 10s));
    // Once the provider has sent past the joined target's checkpoint, it is safe.
    auto record = t.idle_record(at(0x900), true, t0, 10s);
    REQUIRE(record);
    CHECK(*record == at(0x900));
}

// Lanes killed apart: lane 1 committed a batch (0x300) whose lane-0 commit the crash lost, so
// lane 0's row is still at 0x100 and lane 0 lacks its share of 0x300. A clean stop before the
// stream has sent 0x300 again must leave the rows apart: raised to 0x300, lane 0 would skip
// its share of it for good.
TEST_CASE("a clean stop brings the rows together only at what the stream has sent again",
          "[pipeline]") {
    FlushTracker t(std::vector<std::size_t>{0, 0});
    t.start_writer(0, at(0x100), at(0x7000));
    t.start_writer(1, at(0x300), at(0x7000));
    t.start(at(0x100));
    CHECK(t.resume_lsn() == at(0x100));
    CHECK_FALSE(t.together_at());  // nothing streamed yet
    t.received(at(0x200));
    t.committed(0, at(0x200), at(0x7100));
    t.committed(1, at(0x200), std::nullopt);
    CHECK_FALSE(t.together_at());  // 0x300 not sent again yet
    t.received(at(0x300));         // lane 0 applies its share of 0x300; lane 1 skips it
    t.committed(0, at(0x300), at(0x7200));
    t.committed(1, at(0x300), std::nullopt);
    CHECK_FALSE(t.together_at());  // together already
    t.received(at(0x400));
    t.committed(1, at(0x400), at(0x7300));
    t.committed(0, at(0x400), std::nullopt);
    auto together = t.together_at();
    REQUIRE(together);
    CHECK(*together == at(0x400));
}

// Fan-out: writers grouped by target database.
TEST_CASE("a target counts only as far as its stored checkpoint rows hold", "[pipeline]") {
    // Writers 0 and 1 into target 0, writer 2 into target 1.
    FlushTracker t(std::vector<std::size_t>{0, 0, 1});
    for (WriterId w = 0; w < 3; ++w) t.start_writer(w, Lsn{}, Lsn{});
    t.start(std::nullopt);
    CHECK(t.targets() == 2);
    // Batch 1 (end 0x100) touches target 0 only: target 1's writer has nothing to write.
    t.committed(0, at(0x100), at(0x5000));
    t.committed(1, at(0x100), std::nullopt);
    t.committed(2, at(0x100), std::nullopt);
    t.target_flushed(0, at(0x6000));
    t.target_flushed(1, at(0x6000));
    // Target 1 wrote no checkpoint: if the slot moved to 0x100, a restore of target 1 to its
    // state before would not be seen at start. It holds the acknowledgement back, and says so.
    CHECK(t.acknowledged() == Lsn{});
    CHECK(t.stored_behind(1));
    CHECK_FALSE(t.stored_behind(0));
    // Its checkpoint written (a commit of its own with nothing else), and flushed.
    t.committed(2, at(0x100), at(0x9000));
    CHECK_FALSE(t.stored_behind(1));
    CHECK(t.acknowledged() == Lsn{});
    t.target_flushed(2, at(0x9000));
    CHECK(t.acknowledged() == at(0x100));
}

TEST_CASE("one target with lanes: a lane with nothing to write does not hold back", "[pipeline]") {
    FlushTracker t(std::vector<std::size_t>{0, 0});
    for (WriterId w = 0; w < 2; ++w) t.start_writer(w, Lsn{}, Lsn{});
    t.start(std::nullopt);
    t.committed(0, at(0x100), std::nullopt);
    t.committed(1, at(0x100), at(0x5000));
    t.target_flushed(0, at(0x5000));
    t.target_flushed(1, at(0x5000));
    // Lane 1's row holds 0x100 for the target: lane 0 needs none of its own.
    CHECK(t.acknowledged() == at(0x100));
    CHECK_FALSE(t.stored_behind(0));
}

TEST_CASE("a tracker is refused a target without a writer", "[pipeline]") {
    CHECK_THROWS_AS(FlushTracker(std::vector<std::size_t>{0, 2}), std::invalid_argument);
    CHECK_THROWS_AS(FlushTracker(std::vector<std::size_t>{}), std::invalid_argument);
}

TEST_CASE("at start each target holds what the slot confirmed, up to its checkpoint",
          "[pipeline]") {
    FlushTracker t(std::vector<std::size_t>{0, 1});
    t.start_writer(0, at(0x300), at(0x7000));
    t.start_writer(1, at(0x200), at(0x8000));
    t.start(at(0x200));
    CHECK(t.resume_lsn() == at(0x200));
    CHECK(t.acknowledged() == at(0x200));
    // Target 0's checkpoint beyond the slot becomes durable with its target's flush.
    t.target_flushed(0, at(0x7000));
    CHECK(t.acknowledged() == at(0x200));  // target 1 holds 0x200
    t.received(at(0x400));
    t.committed(0, at(0x400), at(0x7100));
    t.committed(1, at(0x400), at(0x8100));
    t.target_flushed(0, at(0x7100));
    t.target_flushed(1, at(0x8100));
    CHECK(t.acknowledged() == at(0x400));
}

// Fan-out's join (engine: copy_joining_target): target 1 was copied as of 0x500, past the
// slot's confirmed 0x200, which target 0's checkpoint holds.
TEST_CASE("a target that joins with a copy skips what its copy holds and holds nothing back",
          "[pipeline]") {
    FlushTracker t(std::vector<std::size_t>{0, 1});
    t.start_writer(0, at(0x200), at(0x7000));
    t.start_writer(1, at(0x500), at(0x8000));
    t.start(at(0x200));
    // The stream resumes where target 0 stopped; target 1 skips the commits in its copy.
    CHECK(t.resume_lsn() == at(0x200));
    CHECK(t.skips(1, at(0x300)));
    CHECK_FALSE(t.skips(1, at(0x500)));
    CHECK_FALSE(t.skips(0, at(0x300)));
    // Target 0 applies 0x300; target 1 had nothing to write for it.
    t.received(at(0x300));
    t.committed(0, at(0x300), at(0x7100));
    t.committed(1, at(0x300), std::nullopt);
    t.target_flushed(0, at(0x7100));
    CHECK(t.acknowledged() == at(0x200));  // the copy's checkpoint is not durable yet
    t.target_flushed(1, at(0x8000));
    CHECK(t.acknowledged() == at(0x300));
    // Past the copy both write: acknowledged once both hold it.
    t.received(at(0x600));
    t.committed(0, at(0x600), at(0x7200));
    t.committed(1, at(0x600), at(0x8100));
    t.target_flushed(0, at(0x7200));
    CHECK(t.acknowledged() == at(0x500));  // target 1 holds its copy's point
    t.target_flushed(1, at(0x8100));
    CHECK(t.acknowledged() == at(0x600));
}
