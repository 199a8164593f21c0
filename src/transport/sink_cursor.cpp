#include "authsync/transport/sink_cursor.hpp"

#include <stdexcept>
#include <utility>

namespace authsync::transport {

SinkCursor::Action SinkCursor::offer(Frame frame, bool oldest) {
    if (ready_) throw std::logic_error("a whole transaction was not taken before the next frame");
    if (!positioned_) {
        if (frame.part != 0) return Action::Skip;  // a copy is what snapshot: never refuses
        position_ = frame.prev_end_lsn;
        positioned_ = true;
    }
    if (frame.end_lsn <= position_) return Action::Skip;
    if (!parts_.empty()) {
        const auto& last = parts_.back();
        // A part held already, delivered again: acknowledging this copy would acknowledge the
        // held one too (the same stream message), which a crash before the apply would lose.
        const bool same = frame.end_lsn == last.end_lsn && frame.epoch == last.epoch;
        if (same && frame.part <= last.part) return Action::Hold;
        if (!same || frame.part != last.part + 1 || frame.parts != last.parts) {
            // The gathered parts cannot be completed in order (their source session died
            // mid-frame, and the next one published its own): start over from this frame.
            parts_.clear();
        }
    }
    if (parts_.empty()) {
        // A transaction's first part carries the chain; a later part alone means its first
        // parts are gone.
        if (frame.part != 0 || frame.prev_end_lsn > position_) {
            return oldest ? Action::Gap : Action::Reread;
        }
    }
    parts_.push_back(std::move(frame));
    if (parts_.back().part + 1 < parts_.back().parts) return Action::Hold;
    ready_ = true;
    return Action::Apply;
}

std::vector<Frame> SinkCursor::take() {
    if (!ready_) throw std::logic_error("no whole transaction to take");
    ready_ = false;
    return std::exchange(parts_, {});
}

void SinkCursor::applied(Lsn end_lsn) {
    if (end_lsn <= position_) throw std::logic_error("applied a transaction the target held");
    position_ = end_lsn;
}

SinkCursor::Action RereadMemory::settle(SinkCursor::Action action, Lsn position) {
    if (action == SinkCursor::Action::Reread) {
        if (reread_at_ != position) {
            reread_at_ = position;
            return action;
        }
        action = SinkCursor::Action::Gap;  // the last session reread from here: still missing
    }
    if (action == SinkCursor::Action::Gap) reread_at_.reset();
    return action;
}

}  // namespace authsync::transport
