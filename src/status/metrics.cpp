// Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` before each family's samples,
// names prefixed authsync_, base units (seconds, bytes), counters ending in _total. A family
// with no sample (e.g. a histogram the engine does not keep) is left out entirely.
#include <array>
#include <cmath>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "authsync/status/router.hpp"
#include "text.hpp"

namespace authsync::status {

namespace {

using detail::label_escape;
using detail::prom_number;

using Labels = std::vector<std::pair<std::string_view, std::string>>;

constexpr std::array<std::string_view, 7> kStates = {
    "starting", "waiting", "snapshotting", "streaming", "reconnecting", "stopping", "failed"};
constexpr std::array<std::string_view, 4> kWalStatuses = {"reserved", "extended", "unreserved",
                                                          "lost"};

class Family {
public:
    Family(std::string_view name, std::string_view type, std::string_view help)
        : name_(name), type_(type), help_(help) {}

    void sample(const Labels& labels, const std::string& value) { sample("", labels, value); }
    void sample(std::string_view suffix, const Labels& labels, const std::string& value) {
        body_ += name_;
        body_ += suffix;
        if (!labels.empty()) {
            body_ += '{';
            bool first = true;
            for (const auto& [key, v] : labels) {
                if (!first) body_ += ',';
                first = false;
                body_ += fmt::format("{}=\"{}\"", key, label_escape(v));
            }
            body_ += '}';
        }
        body_ += ' ';
        body_ += value;
        body_ += '\n';
    }
    // A gauge that is NaN says nothing; an absent sample says the same and parses everywhere.
    void gauge(const Labels& labels, double value) {
        if (!std::isnan(value)) sample(labels, prom_number(value));
    }

    void write_to(std::string& out) const {
        if (body_.empty()) return;
        // HELP text escapes backslash and newline; ours are constants without either.
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name_, help_, name_, type_);
        out += body_;
    }

private:
    std::string_view name_;
    std::string_view type_;
    std::string_view help_;
    std::string body_;
};

std::string integer(std::uint64_t v) {
    return fmt::format("{}", v);
}
std::string integer(std::int64_t v) {
    return fmt::format("{}", v);
}

void histogram(std::string& out, std::string_view name, std::string_view help, const Histogram* h) {
    if (h == nullptr) return;
    Family f(name, "histogram", help);
    const auto& bounds = h->upper_bounds();
    for (std::size_t i = 0; i < bounds.size(); ++i) {
        f.sample("_bucket", {{"le", prom_number(bounds[i])}}, integer(h->counts()[i]));
    }
    f.sample("_bucket", {{"le", "+Inf"}}, integer(h->count()));
    f.sample("_sum", {}, prom_number(h->sum()));
    f.sample("_count", {}, integer(h->count()));
    f.write_to(out);
}

template <typename List>
void one_hot(Family& f, std::string_view label, const List& known, const std::string& current) {
    bool listed = false;
    for (const auto& value : known) {
        const bool is_current = value == current;
        listed = listed || is_current;
        f.sample({{label, std::string(value)}}, is_current ? "1" : "0");
    }
    // A value this build does not know still shows, rather than vanishing from every series.
    if (!listed && !current.empty()) f.sample({{label, current}}, "1");
}

void lsn_gauge(std::string& out, std::string_view name, std::string_view help, Lsn lsn) {
    Family f(name, "gauge", help);
    f.sample({}, integer(lsn.value));
    f.write_to(out);
}

double unix_seconds(PgTimestamp t) {
    return static_cast<double>(t.unix_micros()) / 1e6;
}

}  // namespace

std::string render_metrics(const Snapshot& s) {
    std::string out;
    {
        Family f("authsync_up", "gauge", "1 while the process answers.");
        f.sample({}, "1");
        f.write_to(out);
    }
    {
        Family f("authsync_info", "gauge", "Build and source of this instance; the value is 1.");
        f.sample({{"version", s.version}, {"slot", s.slot}, {"publication", s.publication}}, "1");
        f.write_to(out);
    }
    {
        Family f("authsync_state", "gauge", "1 for the engine's current state, 0 for the others.");
        one_hot(f, "state", kStates, s.state);
        f.write_to(out);
    }
    {
        Family f("authsync_lag_bytes", "gauge",
                 "WAL bytes between the provider's WAL end and the applied position.");
        f.sample({}, integer(s.lag_bytes));
        f.write_to(out);
    }
    {
        Family f("authsync_lag_seconds", "gauge",
                 "Age of the oldest received source transaction not yet applied.");
        f.gauge({}, s.lag_seconds);
        f.write_to(out);
    }
    histogram(out, "authsync_e2e_latency_seconds",
              "Heartbeat latency from provider commit to applied in the target.",
              s.e2e_latency_seconds);
    histogram(out, "authsync_batch_apply_duration_seconds",
              "Time to apply and commit one batch in the target.", s.batch_apply_seconds);
    {
        Family f("authsync_transactions_applied_total", "counter",
                 "Source transactions applied to the target.");
        f.sample({}, integer(s.txns_applied));
        f.write_to(out);
    }
    {
        Family f("authsync_rows_applied_total", "counter",
                 "Rows applied to the target, by source table and operation.");
        for (const auto& [table, rows] : s.rows_applied) {
            f.sample({{"mapping", table}, {"op", "upsert"}}, integer(rows.upserts));
            f.sample({{"mapping", table}, {"op", "delete"}}, integer(rows.deletes));
        }
        f.write_to(out);
    }
    {
        Family f("authsync_batches_total", "counter", "Batches committed to the target.");
        f.sample({}, integer(s.batches));
        f.write_to(out);
    }
    {
        Family f("authsync_reconnects_total", "counter", "Reconnections to provider or target.");
        f.sample({}, integer(s.reconnects));
        f.write_to(out);
    }
    {
        Family f("authsync_errors_total", "counter", "Errors the engine met, retried or not.");
        f.sample({}, integer(s.errors));
        f.write_to(out);
    }
    {
        Family f("authsync_dead_letters_total", "counter",
                 "Changes the target rejected and authsync set aside in authsync.dead_letter.");
        f.sample({}, integer(s.dead_letters));
        f.write_to(out);
    }
    const SlotHealth& slot = s.slot_health;
    {
        Family f("authsync_slot_retained_wal_bytes", "gauge",
                 "WAL the provider retains for the slot (from pg_replication_slots).");
        if (slot.retained_wal_bytes) f.sample({}, integer(*slot.retained_wal_bytes));
        f.write_to(out);
    }
    {
        Family f("authsync_slot_safe_wal_size_bytes", "gauge",
                 "WAL that can still be written before the slot is in danger of being lost.");
        if (slot.safe_wal_size_bytes) f.sample({}, integer(*slot.safe_wal_size_bytes));
        f.write_to(out);
    }
    {
        Family f("authsync_slot_wal_status", "gauge",
                 "1 for the slot's wal_status, 0 for the others; all 0 while unknown.");
        one_hot(f, "status", kWalStatuses, slot.wal_status.value_or(""));
        f.write_to(out);
    }
    lsn_gauge(out, "authsync_received_lsn_bytes", "Newest source transaction end received (LSN).",
              s.received_lsn);
    lsn_gauge(out, "authsync_applied_lsn_bytes", "Position durable in the target (LSN).",
              s.applied_lsn);
    lsn_gauge(out, "authsync_flushed_lsn_bytes", "Flush position reported to the provider (LSN).",
              s.flushed_lsn);
    lsn_gauge(out, "authsync_provider_wal_lsn_bytes", "Newest WAL end the provider reported (LSN).",
              s.provider_wal_lsn);
    {
        Family f("authsync_last_commit_timestamp_seconds", "gauge",
                 "Provider commit time of the newest applied source transaction (Unix time).");
        if (s.last_commit_time) f.gauge({}, unix_seconds(*s.last_commit_time));
        f.write_to(out);
    }
    {
        Family f("authsync_last_applied_timestamp_seconds", "gauge",
                 "When the newest source transaction was applied (Unix time).");
        if (s.last_applied_at) f.gauge({}, unix_seconds(*s.last_applied_at));
        f.write_to(out);
    }
    {
        Family f("authsync_uptime_seconds", "gauge", "Seconds since the process started.");
        f.gauge({}, s.uptime_seconds);
        f.write_to(out);
    }
    return out;
}

}  // namespace authsync::status
