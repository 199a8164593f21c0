// The status endpoint's pure core: what each path answers, given a snapshot of the engine.
//
// route(request, snapshot, options) -> response is a plain function: no sockets, no Beast, no
// clock (the snapshot carries `now`), so every endpoint is tested without a server. The HTTP
// server (src/status/http_server.cpp) only moves bytes and builds the snapshot on the event
// loop. No row data is ever served: the snapshot holds positions, times, counters and errors.
//
//   GET /          small self-contained HTML page: state, lag, a chart of lag over 15 minutes
//   GET /status    JSON (see Snapshot)
//   GET /metrics   Prometheus text exposition, prefix authsync_, base units
//   GET /healthz   200 "ok" while the process and its event loop answer (never needs a token)
//   GET /readyz    200 when streaming and lag_seconds <= max_ready_lag_seconds, else 503
// With a token configured, every path but /healthz needs `Authorization: Bearer <token>`
// (401 otherwise). Other methods: 405; unknown paths: 404.
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

// Everything the endpoint shows, copied from the engine at request time.
struct Snapshot {
    PgTimestamp now;
    std::string version;
    std::string state;  // starting | waiting | snapshotting | streaming | reconnecting | stopping | failed
    std::string slot;
    std::string publication;
    Lsn received_lsn;
    Lsn applied_lsn;
    Lsn flushed_lsn;
    Lsn provider_wal_lsn;
    std::uint64_t lag_bytes = 0;  // provider_wal_lsn - applied_lsn
    double lag_seconds = 0;       // now - commit time of the oldest pending transaction
    std::optional<PgTimestamp> last_commit_time;
    std::optional<PgTimestamp> last_applied_at;
    std::optional<double> e2e_latency_ms;  // of the newest heartbeat
    SlotHealth slot_health;
    std::uint64_t txns_applied = 0;
    std::map<std::string, MappingRows> rows_applied;  // by source table
    std::map<std::string, CopyProgress> snapshot_progress;  // by source table
    std::uint64_t batches = 0;
    std::uint64_t reconnects = 0;
    std::uint64_t errors = 0;
    std::uint64_t dead_letters = 0;
    std::string last_error;
    std::optional<PgTimestamp> last_error_at;
    double uptime_seconds = 0;
    const Histogram* batch_apply_seconds = nullptr;  // may be null
    const Histogram* e2e_latency_seconds = nullptr;  // may be null
    const LagHistory* lag_history = nullptr;         // may be null
};

struct Request {
    std::string method;  // "GET", ...
    std::string target;  // path with optional query string
    std::optional<std::string> authorization;  // the Authorization header, if sent
};

struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::map<std::string, std::string> headers;  // extra headers (e.g. WWW-Authenticate)
};

struct RouteOptions {
    std::optional<std::string> token;  // bearer token; none: open
    double max_ready_lag_seconds = 60;
};

Response route(const Request& request, const Snapshot& snapshot, const RouteOptions& options);

// The renderers route() uses, exposed for tests.
std::string render_status_json(const Snapshot& snapshot);
std::string render_metrics(const Snapshot& snapshot);
std::string render_page(const Snapshot& snapshot);
bool is_ready(const Snapshot& snapshot, const RouteOptions& options);

}  // namespace authsync::status
