// EngineStatus: what the engine knows about its own progress, owned by the event loop.
//
// The engine writes it; the status endpoint (on the same loop) reads it through make_snapshot.
// Plain data. What it reports as it is (positions, times, counters, the last error) is
// status::Progress, shared with the snapshot; what is kept here besides is what the snapshot
// derives from (state, the oldest pending commit, the start time) or points at (histograms,
// lag history).
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "authsync/core/pg_time.hpp"
#include "authsync/status/snapshot.hpp"

namespace authsync::engine {

enum class State { Starting, Waiting, Snapshotting, Streaming, Reconnecting, Stopping, Failed };

const char* state_name(State state);

struct EngineStatus : status::Progress {
    State state = State::Starting;
    // Commit time of the oldest received source transaction not yet sent to the target.
    std::optional<PgTimestamp> oldest_pending_commit_time;
    // Commit time of the oldest transaction of the batch sent to the target whose commit has
    // not been read yet: a batch blocked in the target (a lock, a slow disk) is still lag.
    std::optional<PgTimestamp> oldest_sent_commit_time;
    // Seconds; buckets from 1 ms to about 1 min.
    status::Histogram batch_apply_seconds{
        {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
    status::Histogram e2e_latency_seconds{
        {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
    status::LagHistory lag_history;
    // A target copied alongside the stream (Supervisor::join_targets) is `catching_up` until it
    // holds durably the provider's WAL position when its copy ended: by target.
    std::map<std::string, Lsn> catch_up_to;
    std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();
};

// The endpoint's view of the engine now: lag_bytes = provider WAL end - applied position;
// lag_seconds = now - commit time of the oldest received transaction not yet committed in the
// target, sent or not (0 when none is pending). The snapshot points into `status` for histograms
// and history.
status::Snapshot make_snapshot(const EngineStatus& status, const std::string& slot,
                               const std::string& publication, PgTimestamp now);

}  // namespace authsync::engine
