#include "authsync/pipeline/target_health.hpp"

#include <algorithm>
#include <utility>

namespace authsync::pipeline {

TargetHealth::Verdict TargetHealth::failed(const std::string& name, bool transient,
                                           std::uint64_t held_bytes, std::size_t attached,
                                           Clock::time_point now,
                                           std::optional<Clock::time_point> stalled_since) {
    auto& first = failing_.try_emplace(name, now).first->second;
    if (stalled_since) first = std::min(first, *stalled_since);
    if (auto out = out_.find(name); out != out_.end()) return out->second;  // a straggler
    const auto since = first;
    if (!limited() || attached < 2) return Verdict::Wait;
    Verdict verdict = Verdict::Wait;
    if (!transient) {
        verdict = Verdict::Fail;
    } else if ((limit_.seconds && now - since >= *limit_.seconds) ||
               (limit_.bytes && held_bytes >= *limit_.bytes)) {
        verdict = Verdict::Detach;
    }
    if (verdict != Verdict::Wait) out_[name] = verdict;
    return verdict;
}

namespace {

// Time per change written: a batch's fixed costs (the round trip, the commit) count once.
double per_change(const TargetHealth::Work& w) {
    return std::chrono::duration<double>(w.took).count() /
           static_cast<double>(std::max<std::size_t>(w.rows, 1));
}

}  // namespace

std::optional<TargetHealth::Straggler> TargetHealth::batch_committed(
    const std::map<std::string, Work>& work, Clock::duration lag, std::uint64_t lag_bytes,
    std::size_t attached, Clock::time_point now) {
    if (!limited() || attached < 2 || work.size() < 2) return std::nullopt;  // none to compare
    auto slowest = work.begin();
    for (auto it = work.begin(); it != work.end(); ++it) {
        if (per_change(it->second) > per_change(slowest->second)) slowest = it;
    }
    double next = 0;
    for (auto it = work.begin(); it != work.end(); ++it) {
        if (it != slowest) next = std::max(next, per_change(it->second));
    }
    const double ratio = next > 0 ? per_change(slowest->second) / next : 0.0;
    if (slowest->second.took < kStragglerFloor || (next > 0 && ratio < 2.0)) {
        straggler_.reset();
        return std::nullopt;
    }
    if (!straggler_ || straggler_->name != slowest->first) {
        straggler_ = Straggler{slowest->first, now, 0, 0};
    }
    ++straggler_->batches;
    straggler_->ratio = ratio;
    const bool too_long =
        limit_.seconds && now - straggler_->since >= *limit_.seconds && lag >= *limit_.seconds;
    const bool too_far = limit_.bytes && lag_bytes >= *limit_.bytes && straggler_->batches >= 3;
    if (!too_long && !too_far) return std::nullopt;
    out_[slowest->first] = Verdict::Detach;
    return std::exchange(straggler_, std::nullopt);
}

std::vector<std::string> TargetHealth::to_probe() const {
    std::vector<std::string> names;
    for (const auto& [name, verdict] : out_) {
        if (verdict == Verdict::Detach) names.push_back(name);
    }
    return names;
}

void TargetHealth::clear_failed() {
    std::erase_if(out_, [](const auto& entry) { return entry.second == Verdict::Fail; });
}

void TargetHealth::forget(const std::string& name) {
    failing_.erase(name);
    out_.erase(name);
    if (straggler_ && straggler_->name == name) straggler_.reset();
}

std::optional<TargetHealth::Clock::time_point> TargetHealth::failing_since(
    const std::string& name) const {
    auto it = failing_.find(name);
    if (it == failing_.end()) return std::nullopt;
    return it->second;
}

}  // namespace authsync::pipeline
