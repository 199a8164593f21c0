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

namespace authsync::engine {

enum class State { Starting, Waiting, Snapshotting, Streaming, Reconnecting, Stopping, Failed };

const char* state_name(State state);

struct MappingCounters {
    std::uint64_t upserts = 0;
    std::uint64_t deletes = 0;
};

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
    std::map<std::string, MappingCounters> rows_applied;  // by source table
    std::string last_error;
    std::optional<PgTimestamp> last_error_at;
    std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();
};

}  // namespace authsync::engine
