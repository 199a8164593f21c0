#include "authsync/pipeline/target_health.hpp"

#include <algorithm>

namespace authsync::pipeline {

TargetHealth::Verdict TargetHealth::failed(const std::string& name, bool transient,
                                           std::uint64_t held_bytes, std::size_t attached,
                                           Clock::time_point now,
                                           std::optional<Clock::time_point> stalled_since) {
    auto& first = failing_.try_emplace(name, now).first->second;
    if (stalled_since) first = std::min(first, *stalled_since);
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
}

std::optional<TargetHealth::Clock::time_point> TargetHealth::failing_since(
    const std::string& name) const {
    auto it = failing_.find(name);
    if (it == failing_.end()) return std::nullopt;
    return it->second;
}

}  // namespace authsync::pipeline
