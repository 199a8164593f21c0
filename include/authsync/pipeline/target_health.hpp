// TargetHealth: which targets of a fan-out stream, judged by their failures.
//
// One target whose database is down or refuses changes holds every target back: the slot is
// acknowledged at the lowest position over them. fanout.max_target_lag bounds that. A target
// that fails transiently (its server gone) is waited for until it has failed for the limit's
// seconds or holds the limit's bytes of the provider's WAL; then it is detached: the next
// session runs without it, so the slot moves on, and it is copied again and re-attached once
// its server answers. A target that stalls (a step unanswered for the limit's seconds: a lock
// held in its database, a server that no longer answers) has failed since the step began, so
// it is detached at once. A target that fails for good (a constraint, a permission) fails at
// once: detached, and not tried again until a reload. The last target still attached is never
// detached. A target's failures are over once it commits again. A target that answers, but
// slowly, holds the others back too, since every target commits each batch: one whose time
// per change was at least twice every other's in each batch (a straggler; per change, so that
// a target with more rows to write is not taken for a slow one) is detached once that has
// lasted the limit's seconds while the stream was as far behind, or once the stream is the
// limit's bytes behind. Pure: the clock is passed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace authsync::pipeline {

struct TargetLagLimit {
    std::optional<std::chrono::seconds> seconds;
    std::optional<std::uint64_t> bytes;
};

class TargetHealth {
public:
    using Clock = std::chrono::steady_clock;
    enum class Verdict {
        Wait,    // retry with every target, as without a limit
        Detach,  // run without it until it answers again
        Fail,    // run without it until a reload
    };

    explicit TargetHealth(TargetLagLimit limit = {}) : limit_(limit) {}
    void set_limit(TargetLagLimit limit) { limit_ = limit; }
    bool limited() const { return limit_.seconds || limit_.bytes; }

    // A session failed on target `name`, one of `attached`; `held_bytes`: how far its
    // checkpoint is behind the provider's WAL, as last known. `stalled_since`: the failure is a
    // step that had not answered since then (a stalled target), so its failing began there.
    Verdict failed(const std::string& name, bool transient, std::uint64_t held_bytes,
                   std::size_t attached, Clock::time_point now,
                   std::optional<Clock::time_point> stalled_since = std::nullopt);
    // `name` committed: its failures are over.
    void recovered(const std::string& name) {
        if (!failing_.empty()) failing_.erase(name);
    }
    // A batch committed by several targets with changes to write, `work` per target; the
    // stream was then `lag` behind the provider (`lag_bytes` of its WAL). The straggler to
    // detach, if there is one.
    struct Work {
        Clock::duration took;
        std::size_t rows = 0;
    };
    struct Straggler {
        std::string name;
        Clock::time_point since;  // straggling since then
        std::size_t batches = 0;  // in a row
        double ratio = 0;         // its time per change over the next slowest's, last batch
    };
    std::optional<Straggler> batch_committed(const std::map<std::string, Work>& work,
                                             Clock::duration lag, std::uint64_t lag_bytes,
                                             std::size_t attached, Clock::time_point now);
    // Below this, a batch's times are noise: nobody straggles.
    static constexpr auto kStragglerFloor = std::chrono::milliseconds(50);
    bool detached(const std::string& name) const { return out_.count(name) > 0; }
    // Detached targets to probe for a re-attach (failed ones wait for a reload).
    std::vector<std::string> to_probe() const;
    // `name` answers again: it runs with the next session (its failures count until it commits,
    // so that a target that fails again is detached again at once).
    void reattach(const std::string& name) { out_.erase(name); }
    // A reload: targets that failed for good are tried again; `name` no longer in the config is
    // forgotten (forget()).
    void clear_failed();
    void forget(const std::string& name);
    // Since when `name` has been failing, if it is.
    std::optional<Clock::time_point> failing_since(const std::string& name) const;

private:
    TargetLagLimit limit_;
    std::map<std::string, Clock::time_point> failing_;  // first failure since its last commit
    std::map<std::string, Verdict> out_;                // detached or failed
    std::optional<Straggler> straggler_;                // the batches' slowest by far, if one
};

}  // namespace authsync::pipeline
