// SinkCursor (transport/sink_cursor.hpp): redeliveries, gaps and parts, as sequences of frames.
#include "authsync/transport/sink_cursor.hpp"

#include <catch2/catch.hpp>

using namespace authsync;
using transport::Frame;
using transport::SinkCursor;
using Action = SinkCursor::Action;

namespace {

// Transaction `i` ends at i * 0x100; the one before it on the subject was `prev`.
Frame tx(int i, int prev, std::uint32_t part = 0, std::uint32_t parts = 1) {
    Frame f;
    f.end_lsn = Lsn(static_cast<std::uint64_t>(i) * 0x100);
    f.prev_end_lsn = Lsn(static_cast<std::uint64_t>(prev) * 0x100);
    f.part = part;
    f.parts = parts;
    f.messages = {"B", "I" + std::to_string(i) + "." + std::to_string(part), "C"};
    return f;
}

// A cursor offered frames as a session's consumer delivers them: its first delivery (consumer
// sequence 1) is the oldest frame the stream keeps for the subject.
class Session : public SinkCursor {
public:
    using SinkCursor::SinkCursor;
    Action offer(Frame f) { return SinkCursor::offer(std::move(f), ++delivered_ == 1); }

private:
    int delivered_ = 0;
};

void apply(SinkCursor& c, int i) {
    auto parts = c.take();
    REQUIRE_FALSE(parts.empty());
    c.applied(parts.front().end_lsn);
    CHECK(c.position() == Lsn(static_cast<std::uint64_t>(i) * 0x100));
}

}  // namespace

TEST_CASE("SinkCursor applies the chain in order and skips what the target holds",
          "[unit][sink_cursor]") {
    Session c(Lsn(2 * 0x100));  // the target's checkpoint: transaction 2
    CHECK(c.offer(tx(1, 0)) == Action::Skip);
    CHECK(c.offer(tx(2, 1)) == Action::Skip);
    CHECK(c.offer(tx(3, 2)) == Action::Apply);
    apply(c, 3);
    CHECK(c.offer(tx(5, 3)) == Action::Apply);  // 4 had nothing for this target
    apply(c, 5);
    // Delivered again (an ack lost, a sink that died before acknowledging): nothing twice.
    CHECK(c.offer(tx(3, 2)) == Action::Skip);
    CHECK(c.offer(tx(5, 3)) == Action::Skip);
    CHECK(c.offer(tx(6, 5)) == Action::Apply);
    apply(c, 6);
}

TEST_CASE("SinkCursor starts after a copy at a point between two frames", "[unit][sink_cursor]") {
    // Copied at 0x350: transaction 3 (ends 0x300) is in the copy, 4 (ends 0x400) is not.
    Session c(Lsn(0x350));
    CHECK(c.offer(tx(3, 2)) == Action::Skip);
    CHECK(c.offer(tx(4, 3)) == Action::Apply);
    apply(c, 4);
}

TEST_CASE("SinkCursor finds frames lost before the next one it is given", "[unit][sink_cursor]") {
    Session c(Lsn(3 * 0x100));
    // Transaction 4 is gone (the stream's retention): 5 names it as its predecessor.
    CHECK(c.offer(tx(5, 4)) == Action::Gap);
    CHECK(c.position() == Lsn(3 * 0x100));  // nothing moved
    // A later part whose first part is gone is a gap too.
    Session parts(Lsn(3 * 0x100));
    CHECK(parts.offer(tx(6, 3, 1, 2)) == Action::Gap);
    // The predecessor comes after all (delivered late): applied in order.
    CHECK(c.offer(tx(4, 3)) == Action::Apply);
    apply(c, 4);
    CHECK(c.offer(tx(5, 4)) == Action::Apply);
    apply(c, 5);
}

TEST_CASE("SinkCursor rereads when frames are missing after others came", "[unit][sink_cursor]") {
    // nats-server 2.9 (Debian 12's) can redeliver 61 62 63 65 ... 70 70 64 after an ack_wait,
    // and a delivery in flight to a connection that dies comes only after its ack_wait: 64 is
    // late, not gone. Only a session's first frame (the oldest stored) shows a gap for sure.
    Session c(Lsn(60 * 0x100));
    CHECK(c.offer(tx(61, 60)) == Action::Apply);
    apply(c, 61);
    CHECK(c.offer(tx(63, 62)) == Action::Reread);
    CHECK(c.position() == Lsn(61 * 0x100));              // nothing moved
    CHECK(c.offer(tx(64, 63, 1, 2)) == Action::Reread);  // a later part alone, likewise
    // Below the position, or next in the chain, a frame is what it always was.
    CHECK(c.offer(tx(61, 60)) == Action::Skip);
    CHECK(c.offer(tx(62, 61)) == Action::Apply);
    apply(c, 62);
    // The subject read again by a new session: its first frame past a gap is a gap.
    Session d(Lsn(62 * 0x100));
    CHECK(d.offer(tx(64, 63)) == Action::Gap);
    CHECK(d.offer(tx(63, 62)) == Action::Apply);
    apply(d, 63);
    // Frames at or below the position first, then a gap: it may be late; a reread tells.
    Session e(Lsn(62 * 0x100));
    CHECK(e.offer(tx(62, 61)) == Action::Skip);
    CHECK(e.offer(tx(64, 63)) == Action::Reread);
}

TEST_CASE("A sink that finds the same gap again after a reread copies", "[unit][sink_cursor]") {
    transport::RereadMemory memory;
    auto settle = [&](Session& s, Frame f) {
        return memory.settle(s.offer(std::move(f)), s.position());
    };
    // Session 1: 62 does not come between 61 and 63.
    Session one(Lsn(60 * 0x100));
    CHECK(settle(one, tx(61, 60)) == Action::Apply);
    apply(one, 61);
    CHECK(settle(one, tx(63, 62)) == Action::Reread);
    // Session 2 reads the subject again from 61 and 62 is still not there: a hole, not late.
    Session two(Lsn(61 * 0x100));
    CHECK(settle(two, tx(61, 60)) == Action::Skip);
    CHECK(settle(two, tx(63, 62)) == Action::Gap);
    // After the copy, a late frame at the same position is late again, once.
    Session three(Lsn(61 * 0x100));
    CHECK(settle(three, tx(61, 60)) == Action::Skip);
    CHECK(settle(three, tx(63, 62)) == Action::Reread);
    // A reread that moved on (62 came) and then misses 64 rereads; it does not copy.
    Session four(Lsn(61 * 0x100));
    CHECK(settle(four, tx(62, 61)) == Action::Apply);
    apply(four, 62);
    CHECK(settle(four, tx(65, 64)) == Action::Reread);
    Session five(Lsn(62 * 0x100));
    CHECK(settle(five, tx(64, 63)) == Action::Gap);
}

TEST_CASE("SinkCursor takes a gap for sure only on a consumer's first delivery",
          "[unit][sink_cursor]") {
    // The first delivery was lost (an expired fetch, a dropped connection): the second comes
    // first in the session, past a gap that may only be late.
    SinkCursor c(Lsn(62 * 0x100));
    CHECK(c.offer(tx(64, 63), false) == Action::Reread);
    CHECK(c.position() == Lsn(62 * 0x100));
    // The oldest stored frame for the subject is past the position: gone for sure.
    SinkCursor d(Lsn(62 * 0x100));
    CHECK(d.offer(tx(64, 63), true) == Action::Gap);
    SinkCursor parts(Lsn(62 * 0x100));
    CHECK(parts.offer(tx(64, 62, 1, 2), true) == Action::Gap);
    // Next in the chain, the flag changes nothing.
    SinkCursor e(Lsn(62 * 0x100));
    CHECK(e.offer(tx(63, 62), false) == Action::Apply);
}

TEST_CASE("SinkCursor without a position starts at the first transaction stored whole",
          "[unit][sink_cursor]") {
    // snapshot: never, no checkpoint. The stream's oldest frames for the subject are the last
    // part of transaction 4 (its first part aged out) and a copy of it that a source which
    // died mid-frame left: passed, not a gap (a copy is what `never` refuses).
    SinkCursor c;
    CHECK_FALSE(c.positioned());
    CHECK(c.offer(tx(4, 3, 1, 2), true) == Action::Skip);
    CHECK_FALSE(c.positioned());
    CHECK(c.offer(tx(5, 4, 0, 2), false) == Action::Hold);  // 5 starts whole: the chain
    CHECK(c.positioned());
    CHECK(c.position() == Lsn(4 * 0x100));
    CHECK(c.offer(tx(5, 4, 1, 2), false) == Action::Apply);
    apply(c, 5);
    // From then on it is a cursor like any: a gap past it is one.
    CHECK(c.offer(tx(7, 6), false) == Action::Reread);
    // A single-part first frame positions it at once.
    SinkCursor d;
    CHECK(d.offer(tx(9, 8), true) == Action::Apply);
    apply(d, 9);
}

TEST_CASE("SinkCursor gathers a transaction's parts and applies it whole", "[unit][sink_cursor]") {
    Session c(Lsn(1 * 0x100));
    CHECK(c.offer(tx(2, 1, 0, 3)) == Action::Hold);
    CHECK(c.holding() == Lsn(2 * 0x100));
    // A part delivered twice: still unacknowledged (the copy is the same stream message).
    CHECK(c.offer(tx(2, 1, 0, 3)) == Action::Hold);
    CHECK(c.offer(tx(2, 1, 1, 3)) == Action::Hold);
    CHECK_THROWS_AS(c.take(), std::logic_error);  // not whole yet
    CHECK(c.offer(tx(2, 1, 2, 3)) == Action::Apply);
    const auto parts = c.take();
    REQUIRE(parts.size() == 3);
    for (std::uint32_t k = 0; k < 3; ++k) CHECK(parts[k].part == k);
    c.applied(parts.front().end_lsn);
    CHECK_FALSE(c.holding().is_valid());
    // Parts that cannot be completed (the next transaction begins before the last part):
    // what was gathered is dropped, and the new frame's predecessor shows the gap (perhaps
    // only a late delivery: read again).
    CHECK(c.offer(tx(3, 2, 0, 2)) == Action::Hold);
    CHECK(c.offer(tx(4, 3)) == Action::Reread);
    CHECK_FALSE(c.holding().is_valid());
    CHECK(c.position() == Lsn(2 * 0x100));
}

TEST_CASE("SinkCursor refuses to be driven out of turn", "[unit][sink_cursor]") {
    Session c(Lsn(1 * 0x100));
    CHECK_THROWS_AS(c.take(), std::logic_error);
    CHECK(c.offer(tx(2, 1)) == Action::Apply);
    CHECK_THROWS_AS(c.offer(tx(3, 2)), std::logic_error);  // 2 not taken yet
    c.take();
    CHECK_THROWS_AS(c.applied(Lsn(1 * 0x100)), std::logic_error);
}

TEST_CASE("SinkCursor never completes a dead source session's parts with another session's",
          "[unit][sink_cursor]") {
    Session c(Lsn(2 * 0x100));
    auto first = tx(4, 2, 0, 2);
    first.epoch = 1;  // its session died before part 1
    CHECK(c.offer(first) == Action::Hold);
    // The next session republishes transactions 3 and 4 (the same end) in parts of its own.
    auto again0 = tx(4, 2, 0, 2);
    again0.epoch = 2;
    auto again1 = tx(4, 2, 1, 2);
    again1.epoch = 2;
    CHECK(c.offer(again0) == Action::Hold);  // not taken for a copy of the held part
    CHECK(c.offer(again1) == Action::Apply);
    auto parts = c.take();
    REQUIRE(parts.size() == 2);
    CHECK(parts[0].epoch == 2);
    CHECK(parts[1].epoch == 2);
    // A part of the dead session alone, after another's first: never applied (read again).
    Session d(Lsn(2 * 0x100));
    auto orphan = tx(4, 2, 1, 2);
    orphan.epoch = 1;
    CHECK(d.offer(again0) == Action::Hold);
    CHECK(d.offer(orphan) == Action::Reread);
}

// A mark (frame.hpp): no changes, the subject's chain as its predecessor, and how far the
// source covered the target as its end.
TEST_CASE("SinkCursor takes a mark as a frame that applies nothing, and a gap behind it",
          "[unit][sink_cursor]") {
    const auto mark = [](int prev, int end) {
        Frame f = tx(end, prev);
        f.messages.clear();
        return f;
    };
    SECTION("at the chain: it moves the position, and the next frame still applies") {
        Session c(Lsn(3 * 0x100));
        CHECK(c.offer(mark(3, 7)) == Action::Apply);
        CHECK(c.take().front().messages.empty());
        c.applied(Lsn(7 * 0x100));
        CHECK(c.offer(mark(3, 7)) == Action::Skip);  // delivered again
        CHECK(c.offer(tx(9, 3)) == Action::Apply);   // names the last frame with changes
        apply(c, 9);
    }
    SECTION("behind it, as the oldest stored: the frames it follows are gone") {
        Session c(Lsn(2 * 0x100));
        CHECK(c.offer(mark(3, 7)) == Action::Gap);
    }
    SECTION("behind it, after other deliveries: read the subject again first") {
        Session c(Lsn(2 * 0x100));
        CHECK(c.offer(tx(1, 0)) == Action::Skip);
        CHECK(c.offer(mark(3, 7)) == Action::Reread);
    }
    SECTION("without a position: the chain it names is where the cursor starts") {
        Session c;
        CHECK(c.offer(mark(3, 7)) == Action::Apply);
        CHECK(c.position() == Lsn(3 * 0x100));
    }
}
