#include "authsync/pipeline/flush_tracker.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>

namespace authsync::pipeline {

FlushTracker::FlushTracker(std::size_t writers) : writers_(writers) {
    if (writers == 0) throw std::invalid_argument("FlushTracker needs at least one writer");
}

FlushTracker::FlushTracker(std::vector<std::size_t> target_of) : writers_(target_of.size()) {
    if (target_of.empty()) throw std::invalid_argument("FlushTracker needs at least one writer");
    targets_ = *std::max_element(target_of.begin(), target_of.end()) + 1;
    for (std::size_t t = 0; t < targets_; ++t) {
        if (std::find(target_of.begin(), target_of.end(), t) == target_of.end()) {
            throw std::invalid_argument("FlushTracker: a target without a writer");
        }
    }
    for (std::size_t w = 0; w < writers_.size(); ++w) writers_[w].target = target_of[w];
}

void FlushTracker::start_writer(WriterId w, Lsn checkpoint, Lsn target_insert_point) {
    auto& writer = writers_.at(w);
    writer = Writer{.target = writer.target};
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
        writer.stored = writer.durable;
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
    streamed_ = std::max(streamed_, end_lsn);
}

std::optional<Lsn> FlushTracker::together_at() const {
    if (!committed_.is_valid() || streamed_ < committed_) return std::nullopt;
    const bool apart = std::any_of(writers_.begin(), writers_.end(),
                                   [&](const Writer& w) { return w.checkpoint != committed_; });
    if (!apart) return std::nullopt;
    return committed_;
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
        if (front.target_point) writer.stored = std::max(writer.stored, front.source_end_lsn);
        writer.unflushed.pop_front();
    }
}

Lsn FlushTracker::target_holds(std::size_t t) const {
    std::optional<Lsn> lowest;
    Lsn stored;
    for (const auto& writer : writers_) {
        if (writer.target != t) continue;
        lowest = lowest ? std::min(*lowest, writer.durable) : writer.durable;
        stored = std::max(stored, writer.stored);
    }
    return std::min(lowest.value_or(Lsn{}), stored);
}

bool FlushTracker::stored_behind(std::size_t t) const {
    Lsn lowest;
    bool first = true;
    Lsn stored;
    for (const auto& writer : writers_) {
        if (writer.target != t) continue;
        const Lsn covered =
            writer.unflushed.empty() ? writer.durable : writer.unflushed.back().source_end_lsn;
        lowest = first ? covered : std::min(lowest, covered);
        first = false;
        stored = std::max(stored, writer.checkpoint);
    }
    return stored < lowest;
}

// One pass over the writers (target_holds() for each target would be writers x targets, on
// every commit of every target).
void FlushTracker::update_acknowledged() {
    holds_.assign(targets_, Hold{});
    for (const auto& writer : writers_) {
        auto& h = holds_[writer.target];
        h.lowest = h.seen ? std::min(h.lowest, writer.durable) : writer.durable;
        h.stored = std::max(h.stored, writer.stored);
        h.seen = true;
    }
    Lsn lowest = std::min(holds_.front().lowest, holds_.front().stored);
    for (const auto& h : holds_) lowest = std::min(lowest, std::min(h.lowest, h.stored));
    acknowledged_ = std::max(acknowledged_, lowest);
}

bool FlushTracker::has_unflushed() const {
    return std::any_of(writers_.begin(), writers_.end(),
                       [](const Writer& w) { return !w.unflushed.empty(); });
}

std::optional<Lsn> FlushTracker::idle_record(Lsn wal_end, bool applied_all, Clock::time_point now,
                                             Clock::duration every) {
    if (!applied_all || has_unflushed()) return std::nullopt;
    // Only what the provider has sent is recorded: committed_ may be a writer's starting
    // checkpoint (a target that joined with a copy) that the others have not reached.
    if (wal_end < committed_) return std::nullopt;
    // At what was committed: nothing new, unless the last transactions brought some target
    // nothing and its checkpoint rows were not written for them. They are recorded now, or
    // the slot would stay behind them until more WAL came.
    if (wal_end == committed_) {
        bool behind = false;
        for (std::size_t t = 0; t < targets_ && !behind; ++t) behind = stored_behind(t);
        if (!behind) return std::nullopt;
    }
    if (last_idle_record_ && now - *last_idle_record_ < every) return std::nullopt;
    last_idle_record_ = now;
    streamed_ = std::max(streamed_, wal_end);
    return wal_end;
}

}  // namespace authsync::pipeline
