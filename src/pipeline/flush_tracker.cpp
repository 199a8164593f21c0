#include "authsync/pipeline/flush_tracker.hpp"

#include <algorithm>
#include <stdexcept>

namespace authsync::pipeline {

FlushTracker::FlushTracker(std::size_t writers) : writers_(writers) {
    if (writers == 0) throw std::invalid_argument("FlushTracker needs at least one writer");
}

void FlushTracker::start_writer(WriterId w, Lsn checkpoint, Lsn target_insert_point) {
    auto& writer = writers_.at(w);
    writer = Writer{};
    writer.checkpoint = checkpoint;
    if (checkpoint.is_valid()) writer.unflushed.push_back({target_insert_point, checkpoint});
    received_ = std::max(received_, checkpoint);
    committed_ = std::max(committed_, checkpoint);
}

void FlushTracker::start(std::optional<Lsn> slot_confirmed_flush) {
    Lsn highest;
    for (const auto& writer : writers_) highest = std::max(highest, writer.checkpoint);
    acknowledged_ = Lsn{};
    if (!slot_confirmed_flush) return;
    // What the slot confirmed was durable when it was confirmed: no writer waits for it again.
    for (auto& writer : writers_) {
        writer.durable = std::min(*slot_confirmed_flush, writer.checkpoint);
        while (!writer.unflushed.empty() &&
               writer.unflushed.front().source_end_lsn <= writer.durable) {
            writer.unflushed.pop_front();
        }
    }
    acknowledged_ = std::min(*slot_confirmed_flush, highest);
}

Lsn FlushTracker::resume_lsn() const {
    Lsn lowest = writers_.front().checkpoint;
    for (const auto& writer : writers_) lowest = std::min(lowest, writer.checkpoint);
    return lowest;
}

void FlushTracker::received(Lsn end_lsn) {
    received_ = std::max(received_, end_lsn);
}

void FlushTracker::committed(WriterId w, Lsn end_lsn, std::optional<Lsn> target_point) {
    auto& writer = writers_.at(w);
    if (target_point) writer.checkpoint = std::max(writer.checkpoint, end_lsn);
    writer.unflushed.push_back({target_point, end_lsn});
    committed_ = std::max(committed_, end_lsn);
    // An entry with nothing written is durable as soon as those before it are.
    advance(writer, std::nullopt);
    update_acknowledged();
}

void FlushTracker::target_flushed(WriterId w, Lsn flush) {
    advance(writers_.at(w), flush);
    update_acknowledged();
}

void FlushTracker::advance(Writer& writer, std::optional<Lsn> flush) {
    while (!writer.unflushed.empty()) {
        const auto& front = writer.unflushed.front();
        const bool durable = !front.target_point || (flush && *front.target_point <= *flush);
        if (!durable) break;
        writer.durable = std::max(writer.durable, front.source_end_lsn);
        writer.unflushed.pop_front();
    }
}

void FlushTracker::update_acknowledged() {
    Lsn lowest = writers_.front().durable;
    for (const auto& writer : writers_) lowest = std::min(lowest, writer.durable);
    acknowledged_ = std::max(acknowledged_, lowest);
}

bool FlushTracker::has_unflushed() const {
    return std::any_of(writers_.begin(), writers_.end(),
                       [](const Writer& w) { return !w.unflushed.empty(); });
}

std::optional<Lsn> FlushTracker::idle_record(Lsn wal_end, bool applied_all, Clock::time_point now,
                                             Clock::duration every) {
    if (!applied_all || has_unflushed() || wal_end <= committed_) return std::nullopt;
    if (last_idle_record_ && now - *last_idle_record_ < every) return std::nullopt;
    last_idle_record_ = now;
    return wal_end;
}

}  // namespace authsync::pipeline
