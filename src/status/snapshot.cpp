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

}  // namespace authsync::status
