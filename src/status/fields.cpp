// The status model's one declaration: fields(), in page order. See fields.hpp.
//
// A field that shows a member as it is declares it with as_is and metric_of (values.hpp);
// the rest say here how they are written. A page row or a summary line that reads several
// fields together (Lag, Applied, Slot WAL) belongs to the first of them.
#include "authsync/status/fields.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "lag_chart.hpp"
#include "text.hpp"
#include "values.hpp"

namespace authsync::status {

namespace {

using detail::as_is;
using detail::encode;
using detail::html_escape;
using detail::metric_of;
using detail::one_sample;
using detail::prom_number;
using detail::Samples;

constexpr std::string_view kGauge = "gauge";
constexpr std::string_view kCounter = "counter";

constexpr std::array<std::string_view, 7> kStates = {
    "starting", "waiting", "snapshotting", "streaming", "reconnecting", "stopping", "failed"};
constexpr std::array<std::string_view, 4> kWalStatuses = {"reserved", "extended", "unreserved",
                                                          "lost"};

// 1 for the current value, 0 for the others.
template <typename List>
Samples one_hot(std::string_view label, const List& known, const std::string& current) {
    Samples out;
    bool listed = false;
    for (const auto& value : known) {
        const bool is_current = value == current;
        listed = listed || is_current;
        out.push_back({"", {{label, std::string(value)}}, is_current ? "1" : "0"});
    }
    // A value this build does not know still shows, rather than vanishing from every series.
    if (!listed && !current.empty()) out.push_back({"", {{label, current}}, "1"});
    return out;
}

Samples histogram(const Histogram* h) {
    if (h == nullptr) return {};
    Samples out;
    const auto& bounds = h->upper_bounds();
    for (std::size_t i = 0; i < bounds.size(); ++i) {
        out.push_back(
            {"_bucket", {{"le", prom_number(bounds[i])}}, fmt::format("{}", h->counts()[i])});
    }
    out.push_back({"_bucket", {{"le", "+Inf"}}, fmt::format("{}", h->count())});
    out.push_back({"_sum", {}, prom_number(h->sum())});
    out.push_back({"_count", {}, fmt::format("{}", h->count())});
    return out;
}

std::string_view state_class(const std::string& state) {
    if (state == "streaming") return "ok";
    if (state == "failed") return "bad";
    return "warn";
}

std::string time_or(const std::optional<PgTimestamp>& t, std::string_view otherwise) {
    return t ? t->to_iso8601() : std::string(otherwise);
}

std::string one_decimal_or(double v, std::string_view otherwise) {
    return std::isfinite(v) ? fmt::format("{:.1f}", v) : std::string(otherwise);
}

std::string duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "unknown";
    const auto s = static_cast<std::int64_t>(seconds);
    if (s < 60) return fmt::format("{} s", s);
    if (s < 3600) return fmt::format("{} min {} s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{} h {} min", s / 3600, s % 3600 / 60);
    return fmt::format("{} d {} h", s / 86400, s % 86400 / 3600);
}

std::string human_bytes(std::uint64_t n) {
    if (n < 1024) return fmt::format("{} B", n);
    if (n < 1024 * 1024) return fmt::format("{:.1f} kB", static_cast<double>(n) / 1024);
    if (n < 1024ull * 1024 * 1024)
        return fmt::format("{:.1f} MB", static_cast<double>(n) / 1048576);
    return fmt::format("{:.1f} GB", static_cast<double>(n) / 1073741824);
}

std::string slot_line(const SlotHealth& h) {
    if (!h.wal_status && !h.retained_wal_bytes && !h.safe_wal_size_bytes) return "unknown";
    std::string line = html_escape(h.wal_status.value_or("unknown"));
    if (h.retained_wal_bytes) line += fmt::format(" · {} bytes retained", *h.retained_wal_bytes);
    if (h.safe_wal_size_bytes) line += fmt::format(" · {} bytes safe", *h.safe_wal_size_bytes);
    if (h.checked_at) line += fmt::format(" · checked {}", h.checked_at->to_iso8601());
    return line;
}

std::string or_placeholder(const std::string& text) {
    return text.empty() ? "?" : text;
}

// Targets, worst lag first (then by name).
std::vector<std::pair<const std::string*, const TargetProgress*>> by_lag(const Snapshot& s) {
    std::vector<std::pair<const std::string*, const TargetProgress*>> out;
    for (const auto& [name, t] : s.targets) out.emplace_back(&name, &t);
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
        return a.second->lag_bytes > b.second->lag_bytes;
    });
    return out;
}

std::string targets_table(const Snapshot& s) {
    std::string html =
        "<table id=\"targets\"><tr><th>target</th><th>state</th><th>lag</th>"
        "<th>durable LSN</th><th>rows applied</th><th>checkpoint-only commits</th></tr>";
    for (const auto& [name, t] : by_lag(s)) {
        std::uint64_t rows = 0;
        for (const auto& [table, r] : t->rows_applied) rows += r.upserts + r.deletes;
        html += fmt::format(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(*name), html_escape(t->state), human_bytes(t->lag_bytes),
            t->durable_lsn.to_string(), rows, t->checkpoint_commits);
    }
    return html + "</table>";
}

// A member of slot_health, for as_is and metric_of.
template <typename T>
auto in_slot_health(T SlotHealth::*member) {
    return [member](auto& s) -> auto& {
        return s.slot_health.*member;
    };
}

// A member of transport, for as_is and metric_of.
template <typename T>
auto in_transport(T TransportProgress::*member) {
    return [member](auto& s) -> auto& {
        return s.transport.*member;
    };
}

// A transport counter or gauge: no sample in the in-process engine (no role).
template <typename T>
Metric transport_metric(std::string_view name, std::string_view type, std::string_view help,
                        T TransportProgress::*member) {
    return Metric{name, type, help, [member](const Snapshot& s) {
                      if (s.transport.role.empty()) return Samples{};
                      return detail::samples_of(s.transport.*member);
                  }};
}

std::vector<Field> declare() {
    return {
        {.name = "up",
         .metric = Metric{"authsync_up", kGauge, "1 while the process answers.",
                          [](const Snapshot&) { return one_sample("1"); }}},
        {.name = "state",
         .json = as_is(&Snapshot::state),
         .metric =
             Metric{"authsync_state", kGauge, "1 for the engine's current state, 0 for the others.",
                    [](const Snapshot& s) { return one_hot("state", kStates, s.state); }},
         .page = PageItem{Place::Row, "State", "",
                          [](const Snapshot& s) {
                              return fmt::format("<span id=\"state\" class=\"{}\">{}</span>",
                                                 state_class(s.state), html_escape(s.state));
                          }},
         .summary = SummaryLine{"state",
                                [](const Report& r) {
                                    return fmt::format("{} ({})", or_placeholder(r.snapshot.state),
                                                       r.ready ? "ready" : "not ready");
                                }}},
        {.name = "slot",
         .json = as_is(&Snapshot::slot),
         .page = PageItem{Place::Header, "", "",
                          [](const Snapshot& s) {
                              return fmt::format("slot <code>{}</code>", html_escape(s.slot));
                          }}},
        {.name = "publication",
         .json = as_is(&Snapshot::publication),
         .page = PageItem{Place::Header, "", "",
                          [](const Snapshot& s) {
                              return fmt::format("publication <code>{}</code>",
                                                 html_escape(s.publication));
                          }}},
        {.name = "version",
         .json = as_is(&Snapshot::version),
         .metric =
             Metric{"authsync_info", kGauge, "Build and source of this instance; the value is 1.",
                    [](const Snapshot& s) {
                        return Samples{{"",
                                        {{"version", s.version},
                                         {"slot", s.slot},
                                         {"publication", s.publication}},
                                        "1"}};
                    }},
         .page = PageItem{Place::Header, "", "",
                          [](const Snapshot& s) {
                              return fmt::format("version {}", html_escape(s.version));
                          }}},
        {.name = "lag_bytes",
         .json = as_is(&Snapshot::lag_bytes),
         .metric = metric_of("authsync_lag_bytes", kGauge,
                             "WAL bytes between the provider's WAL end and the applied position.",
                             &Snapshot::lag_bytes),
         .page = PageItem{Place::Row, "Lag", "",
                          [](const Snapshot& s) {
                              return fmt::format(
                                  "<span id=\"lag-seconds\">{}</span> s · "
                                  "<span id=\"lag-bytes\">{}</span> bytes",
                                  one_decimal_or(s.lag_seconds, "unknown"), s.lag_bytes);
                          }},
         .summary = SummaryLine{"lag",
                                [](const Report& r) {
                                    const double seconds = r.snapshot.lag_seconds;
                                    return fmt::format("{}, {}", human_bytes(r.snapshot.lag_bytes),
                                                       std::isfinite(seconds)
                                                           ? fmt::format("{:.1f} s", seconds)
                                                           : "unknown");
                                }}},
        {.name = "lag_seconds",
         .json = as_is(&Snapshot::lag_seconds),
         .metric = metric_of("authsync_lag_seconds", kGauge,
                             "Age of the oldest received source transaction not yet applied.",
                             &Snapshot::lag_seconds)},
        {.name = "received_lsn",
         .json = as_is(&Snapshot::received_lsn),
         .metric =
             metric_of("authsync_received_lsn_bytes", kGauge,
                       "Newest source transaction end received (LSN).", &Snapshot::received_lsn)},
        {.name = "applied_lsn",
         .json = as_is(&Snapshot::applied_lsn),
         .metric = metric_of("authsync_applied_lsn_bytes", kGauge,
                             "Position durable in the target (LSN).", &Snapshot::applied_lsn),
         .page = PageItem{Place::Row, "Applied LSN", "applied-lsn",
                          [](const Snapshot& s) { return s.applied_lsn.to_string(); }},
         .summary = SummaryLine{"applied",
                                [](const Report& r) {
                                    return fmt::format("{} (provider at {})",
                                                       r.snapshot.applied_lsn.to_string(),
                                                       r.snapshot.provider_wal_lsn.to_string());
                                }}},
        {.name = "flushed_lsn",
         .json = as_is(&Snapshot::flushed_lsn),
         .metric =
             metric_of("authsync_flushed_lsn_bytes", kGauge,
                       "Flush position reported to the provider (LSN).", &Snapshot::flushed_lsn)},
        {.name = "provider_wal_lsn",
         .json = as_is(&Snapshot::provider_wal_lsn),
         .metric =
             metric_of("authsync_provider_wal_lsn_bytes", kGauge,
                       "Newest WAL end the provider reported (LSN).", &Snapshot::provider_wal_lsn),
         .page = PageItem{Place::Row, "Provider WAL LSN", "provider-wal-lsn",
                          [](const Snapshot& s) { return s.provider_wal_lsn.to_string(); }}},
        {.name = "last_commit_time",
         .json = as_is(&Snapshot::last_commit_time),
         .metric =
             metric_of("authsync_last_commit_timestamp_seconds", kGauge,
                       "Provider commit time of the newest applied source transaction (Unix time).",
                       &Snapshot::last_commit_time),
         .page = PageItem{Place::Row, "Last commit", "",
                          [](const Snapshot& s) { return time_or(s.last_commit_time, "none"); }}},
        {.name = "last_applied_at",
         .json = as_is(&Snapshot::last_applied_at),
         .metric = metric_of("authsync_last_applied_timestamp_seconds", kGauge,
                             "When the newest source transaction was applied (Unix time).",
                             &Snapshot::last_applied_at),
         .page = PageItem{Place::Row, "Last applied", "",
                          [](const Snapshot& s) { return time_or(s.last_applied_at, "none"); }}},
        {.name = "e2e_latency_ms",
         .json = as_is(&Snapshot::e2e_latency_ms),
         .page = PageItem{Place::Row, "End-to-end latency", "",
                          [](const Snapshot& s) {
                              return s.e2e_latency_ms ? fmt::format("{:.1f} ms", *s.e2e_latency_ms)
                                                      : std::string("unknown");
                          }},
         .summary = SummaryLine{"latency",
                                [](const Report& r) {
                                    const auto& ms = r.snapshot.e2e_latency_ms;
                                    return ms ? fmt::format("{:.1f} ms end to end", *ms)
                                              : std::string("no heartbeat yet");
                                }}},
        {.name = "e2e_latency_seconds",
         .metric = Metric{"authsync_e2e_latency_seconds", "histogram",
                          "Heartbeat latency from provider commit to applied in the target.",
                          [](const Snapshot& s) { return histogram(s.e2e_latency_seconds); }}},
        {.name = "batch_apply_seconds",
         .metric = Metric{"authsync_batch_apply_duration_seconds", "histogram",
                          "Time to apply and commit one batch in the target.",
                          [](const Snapshot& s) { return histogram(s.batch_apply_seconds); }}},
        {.name = "txns_applied",
         .json = as_is(&Snapshot::txns_applied, "counters"),
         .metric = metric_of("authsync_transactions_applied_total", kCounter,
                             "Source transactions applied to the target.", &Snapshot::txns_applied),
         .page = PageItem{Place::Row, "Applied", "",
                          [](const Snapshot& s) {
                              return fmt::format(
                                  "{} transactions in {} batches · {} reconnects · {} errors",
                                  s.txns_applied, s.batches, s.reconnects, s.errors);
                          }}},
        {.name = "batches",
         .json = as_is(&Snapshot::batches, "counters"),
         .metric = metric_of("authsync_batches_total", kCounter, "Batches committed to the target.",
                             &Snapshot::batches)},
        {.name = "batches_chained",
         .json = as_is(&Snapshot::batches_chained, "counters"),
         .metric = metric_of("authsync_batches_chained_total", kCounter,
                             "Batches sent while the batch before still executed in the target.",
                             &Snapshot::batches_chained)},
        {.name = "target_round_trips",
         .json = as_is(&Snapshot::target_round_trips, "counters"),
         .metric = metric_of("authsync_target_round_trips_total", kCounter,
                             "Round trips to the target to apply changes (pipelines and queries; "
                             "durability probes not counted).",
                             &Snapshot::target_round_trips)},
        {.name = "reconnects",
         .json = as_is(&Snapshot::reconnects, "counters"),
         .metric = metric_of("authsync_reconnects_total", kCounter,
                             "Reconnections to provider or target.", &Snapshot::reconnects)},
        {.name = "errors",
         .json = as_is(&Snapshot::errors, "counters"),
         .metric = metric_of("authsync_errors_total", kCounter,
                             "Errors the engine met, retried or not.", &Snapshot::errors)},
        {.name = "dead_letters",
         .json = as_is(&Snapshot::dead_letters, "counters"),
         .metric = metric_of(
             "authsync_dead_letters_total", kCounter,
             "Changes the target rejected and authsync set aside in authsync.dead_letter.",
             &Snapshot::dead_letters)},
        {.name = "rows_applied",
         .json = as_is(&Snapshot::rows_applied, "counters"),
         .metric = Metric{"authsync_rows_applied_total", kCounter,
                          "Rows applied to the target, by source table and operation.",
                          [](const Snapshot& s) {
                              Samples out;
                              for (const auto& [table, rows] : s.rows_applied) {
                                  out.push_back({"",
                                                 {{"mapping", table}, {"op", "upsert"}},
                                                 fmt::format("{}", rows.upserts)});
                                  out.push_back({"",
                                                 {{"mapping", table}, {"op", "delete"}},
                                                 fmt::format("{}", rows.deletes)});
                              }
                              return out;
                          }}},
        {.name = "targets",
         .json = as_is(&Snapshot::targets),
         .metric =
             Metric{"authsync_target_lag_bytes", kGauge,
                    "Provider WAL bytes not yet durable in a target's checkpoint, by target.",
                    [](const Snapshot& s) {
                        Samples out;
                        for (const auto& [name, t] : s.targets) {
                            out.push_back({"", {{"target", name}}, fmt::format("{}", t.lag_bytes)});
                        }
                        return out;
                    }},
         .page = PageItem{Place::Section, "Targets, worst lag first", "", targets_table},
         .summary = SummaryLine{"targets",
                                [](const Report& r) {
                                    const auto sorted = by_lag(r.snapshot);
                                    if (sorted.empty()) return std::string("none reported");
                                    return fmt::format(
                                        "{}, worst {} lag {}", sorted.size(), *sorted.front().first,
                                        human_bytes(sorted.front().second->lag_bytes));
                                }}},
        {.name = "target_detached",
         .metric =
             Metric{"authsync_target_detached", kGauge,
                    "1 while a target is detached or failed (fanout.max_target_lag), by "
                    "target.",
                    [](const Snapshot& s) {
                        Samples out;
                        for (const auto& [name, t] : s.targets) {
                            const bool out_of_stream = t.state == "detached" || t.state == "failed";
                            out.push_back({"", {{"target", name}}, out_of_stream ? "1" : "0"});
                        }
                        return out;
                    }}},
        {.name = "target_rows_applied",
         .metric = Metric{"authsync_target_rows_applied_total", kCounter,
                          "Rows applied, by target, source table and operation.",
                          [](const Snapshot& s) {
                              Samples out;
                              for (const auto& [name, t] : s.targets) {
                                  for (const auto& [table, rows] : t.rows_applied) {
                                      out.push_back(
                                          {"",
                                           {{"target", name}, {"mapping", table}, {"op", "upsert"}},
                                           fmt::format("{}", rows.upserts)});
                                      out.push_back(
                                          {"",
                                           {{"target", name}, {"mapping", table}, {"op", "delete"}},
                                           fmt::format("{}", rows.deletes)});
                                  }
                              }
                              return out;
                          }}},
        {.name = "role", .json = as_is(in_transport(&TransportProgress::role), "transport")},
        {.name = "frames",
         .json = as_is(in_transport(&TransportProgress::frames), "transport"),
         .metric = transport_metric("authsync_transport_frames_total", kCounter,
                                    "JetStream frames published (source role) or applied (sink).",
                                    &TransportProgress::frames)},
        {.name = "frame_bytes",
         .json = as_is(in_transport(&TransportProgress::bytes), "transport"),
         .metric = transport_metric("authsync_transport_frame_bytes_total", kCounter,
                                    "Bytes of those frames.", &TransportProgress::bytes)},
        {.name = "marks",
         .json = as_is(in_transport(&TransportProgress::marks), "transport"),
         .metric = transport_metric(
             "authsync_transport_marks_total", kCounter,
             "Marks, frames without changes that keep an idle subject from emptying under the "
             "stream's retention: published (source role) or taken (sink).",
             &TransportProgress::marks)},
        {.name = "frames_skipped",
         .json = as_is(in_transport(&TransportProgress::skipped), "transport"),
         .metric =
             transport_metric("authsync_transport_frames_skipped_total", kCounter,
                              "Sink: frames delivered that its target's checkpoint already held.",
                              &TransportProgress::skipped)},
        {.name = "redeliveries",
         .json = as_is(in_transport(&TransportProgress::redeliveries), "transport"),
         .metric = transport_metric(
             "authsync_transport_redeliveries_total", kCounter,
             "Sink: frames JetStream delivered again (an acknowledgement lost or late).",
             &TransportProgress::redeliveries)},
        {.name = "stream_pending",
         .json = as_is(in_transport(&TransportProgress::pending), "transport"),
         .metric =
             transport_metric("authsync_transport_stream_pending", kGauge,
                              "Sink: frames on its subject not delivered to it yet (stream lag).",
                              &TransportProgress::pending)},
        {.name = "unacked",
         .json = as_is(in_transport(&TransportProgress::unacked), "transport"),
         .metric = transport_metric("authsync_transport_unacked", kGauge,
                                    "Sink: frames delivered and not acknowledged yet. Source: "
                                    "transactions received and not yet stored by the stream.",
                                    &TransportProgress::unacked)},
        {.name = "copies",
         .json = as_is(in_transport(&TransportProgress::copies), "transport"),
         .metric = transport_metric(
             "authsync_transport_copies_total", kCounter,
             "Sink: copies of its target from the provider (the first, and after a gap).",
             &TransportProgress::copies)},
        {.name = "wal_status",
         .json = as_is(in_slot_health(&SlotHealth::wal_status), "slot_health"),
         .metric = Metric{"authsync_slot_wal_status", kGauge,
                          "1 for the slot's wal_status, 0 for the others; all 0 while unknown.",
                          [](const Snapshot& s) {
                              return one_hot("status", kWalStatuses,
                                             s.slot_health.wal_status.value_or(""));
                          }},
         .page = PageItem{Place::Row, "Slot WAL", "",
                          [](const Snapshot& s) { return slot_line(s.slot_health); }},
         .summary = SummaryLine{"slot",
                                [](const Report& r) {
                                    const auto& h = r.snapshot.slot_health;
                                    std::string line = fmt::format(
                                        "{} wal_status={}", or_placeholder(r.snapshot.slot),
                                        h.wal_status.value_or("unknown"));
                                    if (h.retained_wal_bytes) {
                                        line += " retained=" + human_bytes(*h.retained_wal_bytes);
                                    }
                                    return line;
                                }}},
        {.name = "safe_wal_size_bytes",
         .json = as_is(in_slot_health(&SlotHealth::safe_wal_size_bytes), "slot_health"),
         .metric =
             metric_of("authsync_slot_safe_wal_size_bytes", kGauge,
                       "WAL that can still be written before the slot is in danger of being lost.",
                       in_slot_health(&SlotHealth::safe_wal_size_bytes))},
        {.name = "retained_wal_bytes",
         .json = as_is(in_slot_health(&SlotHealth::retained_wal_bytes), "slot_health"),
         .metric = metric_of("authsync_slot_retained_wal_bytes", kGauge,
                             "WAL the provider retains for the slot (from pg_replication_slots).",
                             in_slot_health(&SlotHealth::retained_wal_bytes))},
        {.name = "checked_at",
         .json = as_is(in_slot_health(&SlotHealth::checked_at), "slot_health")},
        {.name = "last_error",
         .json = JsonKey{{},
                         [](const Report& r) {
                             const Snapshot& s = r.snapshot;
                             return s.last_error.empty() ? Json(nullptr)
                                                         : Json{{"message", s.last_error},
                                                                {"at", encode(s.last_error_at)}};
                         },
                         [](const Json& j, Report& r) {
                             if (j.is_null()) {
                                 r.snapshot.last_error.clear();
                                 r.snapshot.last_error_at.reset();
                             } else if (j.is_object()) {
                                 detail::decode_member(j, "message", r.snapshot.last_error);
                                 detail::decode_member(j, "at", r.snapshot.last_error_at);
                             }
                         }},
         .page = PageItem{Place::Row, "Last error", "last-error",
                          [](const Snapshot& s) {
                              if (s.last_error.empty()) return std::string("none");
                              return fmt::format(
                                  "<pre>{}</pre>{}", html_escape(s.last_error),
                                  s.last_error_at ? " at " + s.last_error_at->to_iso8601() : "");
                          }},
         .summary = SummaryLine{"error",
                                [](const Report& r) {
                                    const Snapshot& s = r.snapshot;
                                    if (s.last_error.empty()) return std::string("none");
                                    return fmt::format("{} (at {})", s.last_error,
                                                       time_or(s.last_error_at, "?"));
                                }}},
        {.name = "snapshot", .json = as_is(&Snapshot::snapshot_progress)},
        {.name = "lag_history",
         .page = PageItem{Place::Section, "Lag, last 15 minutes", "",
                          [](const Snapshot& s) { return detail::lag_chart(s); }}},
        {.name = "now",
         .page = PageItem{Place::Footer, "", "",
                          [](const Snapshot& s) {
                              return fmt::format("as of <time>{}</time>", s.now.to_iso8601());
                          }}},
        {.name = "uptime_seconds",
         .json = as_is(&Snapshot::uptime_seconds),
         .metric = metric_of("authsync_uptime_seconds", kGauge,
                             "Seconds since the process started.", &Snapshot::uptime_seconds),
         .page = PageItem{Place::Footer, "", "",
                          [](const Snapshot& s) { return "up " + duration(s.uptime_seconds); }}},
        {.name = "ready",
         .json = JsonKey{{},
                         [](const Report& r) { return Json(r.ready); },
                         [](const Json& j, Report& r) { detail::decode(j, r.ready); }}},
    };
}

}  // namespace

const std::vector<Field>& fields() {
    static const std::vector<Field> kFields = declare();
    return kFields;
}

}  // namespace authsync::status
