// EngineStatus: what the engine knows about its own progress, owned by the event loop.
//
// The engine writes it; the status endpoint (on the same loop) reads it. Plain data.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "authsync/core/lsn.hpp"
#include "authsync/core/pg_time.hpp"
#include "authsync/status/router.hpp"

namespace authsync::engine {

enum class State { Starting, Waiting, Snapshotting, Streaming, Reconnecting, Stopping, Failed };

const char* state_name(State state);

struct EngineStatus;

struct EngineStatus {
    State state = State::Starting;
    Lsn received_lsn;      // end_lsn of the newest source transaction received
    Lsn applied_lsn;       // durable in the target (or acknowledged while idle)
    Lsn flushed_lsn;       // last flush position reported to the provider
    Lsn provider_wal_lsn;  // newest WAL end the provider told us about
    std::optional<PgTimestamp> last_commit_time;  // of the newest applied source transaction
    std::optional<PgTimestamp> last_applied_at;   // when it was applied
    // Commit time of the oldest received source transaction not yet durable in the target.
    std::optional<PgTimestamp> oldest_pending_commit_time;
    std::uint64_t txns_applied = 0;
    std::uint64_t batches = 0;
    std::uint64_t reconnects = 0;
    std::uint64_t errors = 0;
    std::uint64_t dead_letters = 0;  // changes set aside (apply.on_error: dead_letter)
    std::map<std::string, status::MappingRows> rows_applied;  // by source table
    std::map<std::string, status::CopyProgress> snapshot_progress;  // initial copy, by source table
    std::optional<double> e2e_latency_ms;  // newest heartbeat: provider commit -> applied
    status::SlotHealth slot_health;
    // Seconds; buckets from 1 ms to about 1 min.
    status::Histogram batch_apply_seconds{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5, 1, 2.5, 5, 10, 30, 60}};
    status::Histogram e2e_latency_seconds{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5, 1, 2.5, 5, 10, 30, 60}};
    status::LagHistory lag_history;
    std::string last_error;
    std::optional<PgTimestamp> last_error_at;
    std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();
};

// The endpoint's view of the engine now: lag_bytes = provider WAL end - applied position;
// lag_seconds = now - commit time of the oldest received transaction not yet durable (0 when
// none is pending). The snapshot points into `status` for histograms and history.
status::Snapshot make_snapshot(const EngineStatus& status, const std::string& slot,
                               const std::string& publication, PgTimestamp now);

}  // namespace authsync::engine
