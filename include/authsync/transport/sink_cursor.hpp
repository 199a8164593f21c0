// SinkCursor: what a sink does with each frame of its target's subject, given what the target
// holds (its checkpoint), so that a frame delivered again is never applied twice and frames
// lost to the stream's retention are never applied across.
//
// JetStream delivers at least once and, after a redelivery, not always in order; the frames of
// one subject form a chain (each names the end_lsn of the one before: frame.hpp). A frame at or
// below the position is skipped (acknowledge it: the target has it). A frame whose predecessor
// is past the position means the frames in between are gone: a gap, to be repaired by copying
// the target again (fan-out's join), never by applying on; unless it is not the oldest frame
// stored for the subject, when the ones between may only be late (reread the subject first). A
// transaction in several parts is held until its last part, then applied whole. Pure: no I/O.
#pragma once

#include <optional>
#include <vector>

#include "authsync/core/lsn.hpp"
#include "authsync/transport/frame.hpp"

namespace authsync::transport {

class SinkCursor {
public:
    enum class Action {
        Skip,   // the target holds it already: acknowledge it
        Hold,   // a part of a transaction not whole yet (or a copy of one): keep it unacknowledged
        Apply,  // a whole transaction: take() it, apply it with its end_lsn, then applied()
        Gap,    // frames before it are missing: the target needs a copy
        // Frames before it are missing, and it is not the oldest stored: they may only be late
        // (a redelivery out of order, nats-server before 2.10.14, #5305; a delivery lost with
        // an expired fetch or a connection). Read the subject again from the position: a new
        // consumer's first delivery is the oldest stored frame, where a gap is certain.
        Reread,
    };

    // `position`: the target's checkpoint (for a target just copied, the copy's consistent
    // point).
    explicit SinkCursor(Lsn position) : position_(position), positioned_(true) {}
    // No checkpoint and no copy (snapshot: never): the position is set by the first frame
    // that starts a transaction; later parts alone before it (their first parts gone) Skip.
    SinkCursor() = default;

    // Frames in the order the session's consumer delivers them. `oldest`: the consumer's first
    // delivery (consumer sequence 1), the oldest frame the stream keeps for the subject.
    Action offer(Frame frame, bool oldest);
    // The parts of the transaction offer() said to apply, in order.
    std::vector<Frame> take();
    // That transaction is committed in the target, with its checkpoint.
    void applied(Lsn end_lsn);
    // A default-made cursor has none until it is offered a transaction's first part.
    bool positioned() const { return positioned_; }
    Lsn position() const { return position_; }
    // The end_lsn of a transaction held in part, or an invalid Lsn.
    Lsn holding() const { return parts_.empty() ? Lsn{} : parts_.front().end_lsn; }

private:
    Lsn position_;
    bool positioned_ = false;
    std::vector<Frame> parts_;  // of the transaction being gathered, or ready to take
    bool ready_ = false;
};

// What a sink carries from one session to the next: where it last read its subject again. A
// Reread at that same position in the next session is a hole in the stream, not a late frame.
class RereadMemory {
public:
    // `action`, offered at cursor position `position`, as the sink must take it: a Reread
    // where the last session reread becomes a Gap.
    SinkCursor::Action settle(SinkCursor::Action action, Lsn position);

private:
    std::optional<Lsn> reread_at_;
};

}  // namespace authsync::transport
