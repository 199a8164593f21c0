#include "authsync/engine/status.hpp"

#include "authsync/version.hpp"

namespace authsync::engine {

const char* state_name(State state) {
    switch (state) {
        case State::Starting: return "starting";
        case State::Waiting: return "waiting";
        case State::Snapshotting: return "snapshotting";
        case State::Streaming: return "streaming";
        case State::Reconnecting: return "reconnecting";
        case State::Stopping: return "stopping";
        case State::Failed: return "failed";
    }
    return "unknown";
}

status::Snapshot make_snapshot(const EngineStatus& st, const std::string& slot,
                               const std::string& publication, PgTimestamp now) {
    status::Snapshot s;
    s.now = now;
    s.version = kVersion;
    s.state = state_name(st.state);
    s.slot = slot;
    s.publication = publication;
    s.received_lsn = st.received_lsn;
    s.applied_lsn = st.applied_lsn;
    s.flushed_lsn = st.flushed_lsn;
    s.provider_wal_lsn = st.provider_wal_lsn;
    s.lag_bytes = lsn_bytes_between(st.applied_lsn, st.provider_wal_lsn);
    if (st.oldest_pending_commit_time) {
        auto us = now.micros - st.oldest_pending_commit_time->micros;
        s.lag_seconds = us > 0 ? static_cast<double>(us) / 1e6 : 0.0;
    }
    s.last_commit_time = st.last_commit_time;
    s.last_applied_at = st.last_applied_at;
    s.e2e_latency_ms = st.e2e_latency_ms;
    s.slot_health = st.slot_health;
    s.txns_applied = st.txns_applied;
    s.rows_applied = st.rows_applied;
    s.snapshot_progress = st.snapshot_progress;
    s.batches = st.batches;
    s.reconnects = st.reconnects;
    s.errors = st.errors;
    s.dead_letters = st.dead_letters;
    s.last_error = st.last_error;
    s.last_error_at = st.last_error_at;
    s.uptime_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - st.started_at).count();
    s.batch_apply_seconds = &st.batch_apply_seconds;
    s.e2e_latency_seconds = &st.e2e_latency_seconds;
    s.lag_history = &st.lag_history;
    return s;
}

}  // namespace authsync::engine
