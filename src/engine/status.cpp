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
    // What the engine reports is shown as it is: copied whole, so a new field needs no line here.
    static_cast<status::Progress&>(s) = st;
    s.now = now;
    s.version = kVersion;
    s.state = state_name(st.state);
    s.slot = slot;
    s.publication = publication;
    s.lag_bytes = lsn_bytes_between(st.applied_lsn, st.provider_wal_lsn);
    for (auto& [name, t] : s.targets) {
        t.lag_bytes = lsn_bytes_between(t.durable_lsn, st.provider_wal_lsn);
    }
    // The sent batch's transactions are older than the ones received since.
    const auto& oldest =
        st.oldest_sent_commit_time ? st.oldest_sent_commit_time : st.oldest_pending_commit_time;
    if (oldest) {
        const auto us = now.micros - oldest->micros;
        s.lag_seconds = us > 0 ? static_cast<double>(us) / 1e6 : 0.0;
    }
    s.uptime_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - st.started_at).count();
    s.batch_apply_seconds = &st.batch_apply_seconds;
    s.e2e_latency_seconds = &st.e2e_latency_seconds;
    s.lag_history = &st.lag_history;
    return s;
}

}  // namespace authsync::engine
