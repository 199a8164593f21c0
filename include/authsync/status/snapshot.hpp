// What the status endpoint knows of the engine: the data of the status model.
//
// `Progress` holds what the engine reports as it runs (positions, times, counters, the last
// error); the engine's own status (engine/status.hpp) and the endpoint's `Snapshot` both derive
// from it, so a snapshot copies it whole instead of field by field. `Snapshot` adds what is
// judged at request time (state name, lag, uptime) and points at the engine's histograms and
// lag history. How each field is shown is declared once, in fields.hpp. No row data: positions,
// times, counters, names and error messages only.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "authsync/core/lsn.hpp"
#include "authsync/core/pg_time.hpp"

namespace authsync::status {

// A Prometheus-style cumulative histogram with fixed upper bounds (seconds).
class Histogram {
public:
    explicit Histogram(std::vector<double> upper_bounds);
    void observe(double value);
    const std::vector<double>& upper_bounds() const { return bounds_; }
    // counts()[i] = observations <= upper_bounds()[i] (cumulative); count() includes +Inf.
    const std::vector<std::uint64_t>& counts() const { return counts_; }
    std::uint64_t count() const { return count_; }
    double sum() const { return sum_; }

private:
    std::vector<double> bounds_;
    std::vector<std::uint64_t> counts_;
    std::uint64_t count_ = 0;
    double sum_ = 0;
};

// Lag samples for the page's chart: one per sample() call, older than `window` dropped.
struct LagSample {
    std::int64_t unix_seconds = 0;
    double lag_seconds = 0;
    std::uint64_t lag_bytes = 0;
};

class LagHistory {
public:
    explicit LagHistory(std::int64_t window_seconds = 15 * 60) : window_(window_seconds) {}
    void add(const LagSample& sample);
    const std::deque<LagSample>& samples() const { return samples_; }

private:
    std::int64_t window_;
    std::deque<LagSample> samples_;
};

struct MappingRows {
    std::uint64_t upserts = 0;
    std::uint64_t deletes = 0;
};

// Initial copy progress of one mapping (while state is snapshotting, and after).
struct CopyProgress {
    std::uint64_t copied = 0;
    std::optional<std::uint64_t> estimated;  // pg_class.reltuples at the start
};

struct SlotHealth {
    std::optional<std::string> wal_status;  // reserved | extended | unreserved | lost
    std::optional<std::int64_t> safe_wal_size_bytes;
    std::optional<std::uint64_t> retained_wal_bytes;
    std::optional<PgTimestamp> checked_at;
};

// One target database (fan-out; the `target:` form is one named "default").
struct TargetProgress {
    // streaming, copying (joining with a copy of its own), catching_up (copied; applying from
    // the stream what came since, up to where the stream was when its copy ended), detached
    // (fanout.max_target_lag: waits for its server, then is copied again), failed (refused a
    // change; until a reload).
    std::string state = "streaming";
    std::string error;  // why it is detached or failed
    // The highest source end_lsn its checkpoint rows hold durably (and everything before it):
    // the slot is acknowledged at the lowest over targets.
    Lsn durable_lsn;
    std::uint64_t lag_bytes = 0;  // provider_wal_lsn - durable_lsn; set at snapshot time
    // Commits of its checkpoint alone, made while its tenant is quiet and others move.
    std::uint64_t checkpoint_commits = 0;
    std::map<std::string, MappingRows> rows_applied;  // by source table
};

// The JetStream transport (transport.kind: nats): the source role's publishing, or a sink's
// applying. Role "" in the in-process engine.
struct TransportProgress {
    std::string role;                // "", "source" or "sink"
    std::uint64_t frames = 0;        // published (source), applied (sink)
    std::uint64_t bytes = 0;         // of those frames
    std::uint64_t marks = 0;         // frames without changes (frame.hpp): published, taken
    std::uint64_t skipped = 0;       // sink: frames its checkpoint already held
    std::uint64_t redeliveries = 0;  // sink: frames delivered again (a lost or late ack)
    std::uint64_t pending = 0;       // sink: its subject's frames not delivered yet (stream lag)
    // sink: frames delivered and not yet acknowledged; source: transactions received and not
    // yet stored by the stream (the provider is acknowledged only past them)
    std::uint64_t unacked = 0;
    std::uint64_t copies = 0;  // sink: copies of its target (the first, after a gap)
};

// What the engine reports as it runs, shown as it is.
struct Progress {
    Lsn received_lsn;      // end_lsn of the newest source transaction received
    Lsn applied_lsn;       // durable in the target (or acknowledged while idle)
    Lsn flushed_lsn;       // last flush position reported to the provider
    Lsn provider_wal_lsn;  // newest WAL end the provider told us about
    std::optional<PgTimestamp> last_commit_time;  // of the newest applied source transaction
    std::optional<PgTimestamp> last_applied_at;   // when it was applied
    std::optional<double> e2e_latency_ms;         // newest heartbeat: provider commit -> applied
    SlotHealth slot_health;
    std::uint64_t txns_applied = 0;
    std::uint64_t batches = 0;
    // Sent behind the batch before while it still executed (at low load, one writer).
    std::uint64_t batches_chained = 0;
    // Round trips to the target made to apply (pipelines and queries of the writers; the
    // durability probes between batches not counted): per batch at low load, one.
    std::uint64_t target_round_trips = 0;
    std::uint64_t reconnects = 0;
    std::uint64_t errors = 0;
    std::uint64_t dead_letters = 0;  // changes set aside (apply.on_error: dead_letter)
    std::map<std::string, MappingRows> rows_applied;        // by source table
    std::map<std::string, CopyProgress> snapshot_progress;  // initial copy, by source table
    std::map<std::string, TargetProgress> targets;          // by target name
    TransportProgress transport;
    std::string last_error;
    std::optional<PgTimestamp> last_error_at;
};

// Everything the endpoint shows, taken from the engine at request time.
struct Snapshot : Progress {
    PgTimestamp now;
    std::string version;
    std::string
        state;  // starting | waiting | snapshotting | streaming | reconnecting | stopping | failed
    std::string slot;
    std::string publication;
    std::uint64_t lag_bytes = 0;  // provider_wal_lsn - applied_lsn
    double lag_seconds = 0;       // now - commit time of the oldest pending transaction
    double uptime_seconds = 0;
    const Histogram* batch_apply_seconds = nullptr;  // may be null
    const Histogram* e2e_latency_seconds = nullptr;  // may be null
    const LagHistory* lag_history = nullptr;         // may be null
};

// A sink of several targets shows them together: `other`'s targets join `into`'s, counters
// add up, lag is the worst, and a state other than streaming shows over streaming. The
// histograms and history stay `into`'s.
void merge_into(Snapshot& into, const Snapshot& other);

}  // namespace authsync::status
