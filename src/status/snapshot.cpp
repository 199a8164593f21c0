#include "authsync/status/snapshot.hpp"

#include <algorithm>
#include <cmath>

namespace authsync::status {

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
    // The +Inf bucket is implicit (count()); exposition needs finite bounds in increasing order.
    std::erase_if(bounds_, [](double b) { return !std::isfinite(b); });
    std::sort(bounds_.begin(), bounds_.end());
    bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
    counts_.assign(bounds_.size(), 0);
}

void Histogram::observe(double value) {
    // A non-finite duration is a bug upstream; counting it would turn sum() into Inf or NaN.
    if (!std::isfinite(value)) return;
    // Cumulative: the value counts in every bucket from the first bound >= value upwards.
    for (std::size_t i = bounds_.size(); i-- > 0 && value <= bounds_[i];) ++counts_[i];
    ++count_;
    sum_ += value;
}

void LagHistory::add(const LagSample& sample) {
    // If the wall clock stepped back, samples "from the future" would draw the chart backwards.
    while (!samples_.empty() && samples_.back().unix_seconds > sample.unix_seconds) {
        samples_.pop_back();
    }
    samples_.push_back(sample);
    const std::int64_t oldest = sample.unix_seconds - window_;
    while (samples_.front().unix_seconds < oldest) samples_.pop_front();
}

void merge_into(Snapshot& into, const Snapshot& other) {
    for (const auto& [name, target] : other.targets) into.targets[name] = target;
    for (const auto& [table, rows] : other.rows_applied) {
        into.rows_applied[table].upserts += rows.upserts;
        into.rows_applied[table].deletes += rows.deletes;
    }
    for (auto member : {&Progress::txns_applied, &Progress::batches, &Progress::batches_chained,
                        &Progress::target_round_trips, &Progress::reconnects, &Progress::errors,
                        &Progress::dead_letters}) {
        into.*member += other.*member;
    }
    for (auto member :
         {&TransportProgress::frames, &TransportProgress::bytes, &TransportProgress::marks,
          &TransportProgress::skipped, &TransportProgress::redeliveries,
          &TransportProgress::pending, &TransportProgress::unacked, &TransportProgress::copies}) {
        into.transport.*member += other.transport.*member;
    }
    into.lag_bytes = std::max(into.lag_bytes, other.lag_bytes);
    into.lag_seconds = std::max(into.lag_seconds, other.lag_seconds);
    if (into.state == "streaming" && other.state != "streaming") into.state = other.state;
    if (other.last_error_at &&
        (!into.last_error_at || *into.last_error_at < *other.last_error_at)) {
        into.last_error = other.last_error;
        into.last_error_at = other.last_error_at;
    }
}

}  // namespace authsync::status
