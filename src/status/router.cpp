#include "authsync/status/router.hpp"

#include <algorithm>
#include <cmath>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "authsync/core/ascii.hpp"
#include "authsync/core/utf8.hpp"

namespace authsync::status {

namespace {

// Keys in the order written, so the document reads top-down for a human with curl.
using Json = nlohmann::ordered_json;

constexpr std::string_view kPlainText = "text/plain; charset=utf-8";

Json time_or_null(const std::optional<PgTimestamp>& t) {
    return t ? Json(t->to_iso8601()) : Json(nullptr);
}

template <typename T>
Json value_or_null(const std::optional<T>& v) {
    return v ? Json(*v) : Json(nullptr);
}

// Error messages carry server text in whatever encoding: ill-formed UTF-8 is written as \xHH,
// as on the page and in /metrics (core/utf8.hpp).
void escape_ill_formed_strings(Json& j) {
    if (j.is_string()) {
        auto& text = j.get_ref<std::string&>();
        if (!is_valid_utf8(text)) text = escape_ill_formed_utf8(text);
    } else if (j.is_structured()) {
        for (auto& v : j) escape_ill_formed_strings(v);
    }
}

std::string status_json(const Snapshot& s, const RouteOptions& options) {
    Json rows = Json::object();
    for (const auto& [table, counts] : s.rows_applied) {
        rows[table] = Json{{"upserts", counts.upserts}, {"deletes", counts.deletes}};
    }
    Json j;
    j["state"] = s.state;
    j["slot"] = s.slot;
    j["publication"] = s.publication;
    j["received_lsn"] = s.received_lsn.to_string();
    j["applied_lsn"] = s.applied_lsn.to_string();
    j["flushed_lsn"] = s.flushed_lsn.to_string();
    j["provider_wal_lsn"] = s.provider_wal_lsn.to_string();
    j["lag_bytes"] = s.lag_bytes;
    j["lag_seconds"] = s.lag_seconds;  // a non-finite value is written as null
    j["last_commit_time"] = time_or_null(s.last_commit_time);
    j["last_applied_at"] = time_or_null(s.last_applied_at);
    j["e2e_latency_ms"] = value_or_null(s.e2e_latency_ms);
    j["slot_health"] = Json{
        {"wal_status", value_or_null(s.slot_health.wal_status)},
        {"safe_wal_size_bytes", value_or_null(s.slot_health.safe_wal_size_bytes)},
        {"retained_wal_bytes", value_or_null(s.slot_health.retained_wal_bytes)},
        {"checked_at", time_or_null(s.slot_health.checked_at)},
    };
    Json& counters = j["counters"];
    counters["txns_applied"] = s.txns_applied;
    counters["batches"] = s.batches;
    counters["reconnects"] = s.reconnects;
    counters["errors"] = s.errors;
    counters["dead_letters"] = s.dead_letters;
    counters["rows_applied"] = std::move(rows);
    j["last_error"] = s.last_error.empty()
                          ? Json(nullptr)
                          : Json{{"message", s.last_error}, {"at", time_or_null(s.last_error_at)}};
    Json progress = Json::object();
    for (const auto& [table, p] : s.snapshot_progress) {
        progress[table] = Json{{"rows_copied", p.copied}, {"rows_estimated", value_or_null(p.estimated)}};
    }
    j["snapshot"] = std::move(progress);
    j["uptime_seconds"] = s.uptime_seconds;
    j["version"] = s.version;
    j["ready"] = is_ready(s, options);
    escape_ill_formed_strings(j);
    // Object keys (mapping names from the configuration) are not escaped above: the encoder
    // replaces what is ill-formed in them rather than throw.
    return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string not_ready_reason(const Snapshot& s, const RouteOptions& options) {
    if (s.state != "streaming") {
        return fmt::format("not streaming: {}", s.state.empty() ? "unknown" : s.state);
    }
    if (std::isnan(s.lag_seconds)) return "lag unknown";
    return fmt::format("lag {:.1f} s exceeds {} s", s.lag_seconds, options.max_ready_lag_seconds);
}

std::string_view path_of(std::string_view target) {
    return target.substr(0, target.find('?'));
}

// The time taken depends on the length of what the client sent, never on where it differs from
// the token nor on the token's length. An empty token matches nothing: fail closed.
bool constant_time_equal(std::string_view supplied, std::string_view token) {
    if (token.empty()) return false;
    unsigned diff = supplied.size() == token.size() ? 0U : 1U;
    for (std::size_t i = 0; i < supplied.size(); ++i) {
        diff |= static_cast<unsigned char>(supplied[i]) ^
                static_cast<unsigned char>(token[i % token.size()]);
    }
    return diff == 0;
}

// `Authorization: Bearer <token>` (RFC 6750; the scheme is case-insensitive, RFC 7235).
bool authorized(const Request& request, const RouteOptions& options) {
    if (!options.token) return true;
    if (!request.authorization) return false;
    constexpr std::string_view kScheme = "bearer";
    constexpr std::string_view kWhitespace = " \t";  // HTTP's optional whitespace
    const std::string_view header = trim(*request.authorization, kWhitespace);
    if (header.size() <= kScheme.size() ||
        !iequals_ascii(header.substr(0, kScheme.size()), kScheme))
        return false;
    const char separator = header[kScheme.size()];
    if (separator != ' ' && separator != '\t') return false;
    const std::string_view credentials = trim(header.substr(kScheme.size() + 1), kWhitespace);
    return !credentials.empty() && constant_time_equal(credentials, *options.token);
}

Response make(int status, std::string_view content_type, std::string body) {
    Response r;
    r.status = status;
    r.content_type = std::string(content_type);
    r.body = std::move(body);
    return r;
}

Response page_response(const Snapshot& s) {
    Response r = make(200, "text/html; charset=utf-8", render_page(s));
    // The page is self-contained; the policy makes that a property the browser enforces.
    r.headers.emplace("Content-Security-Policy",
                      "default-src 'none'; style-src 'unsafe-inline'; "
                      "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; "
                      "form-action 'none'; frame-ancestors 'none'");
    r.headers.emplace("X-Content-Type-Options", "nosniff");
    return r;
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
    // The +Inf bucket is implicit (count()); exposition needs finite bounds in increasing order.
    std::erase_if(bounds_, [](double b) { return !std::isfinite(b); });
    std::sort(bounds_.begin(), bounds_.end());
    bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
    counts_.assign(bounds_.size(), 0);
}

void Histogram::observe(double value) {
    // A non-finite duration is a bug upstream; counting it would turn sum() into Inf or NaN.
    if (!std::isfinite(value)) return;
    // Cumulative: the value counts in every bucket from the first bound >= value upwards.
    for (std::size_t i = bounds_.size(); i-- > 0 && value <= bounds_[i];) ++counts_[i];
    ++count_;
    sum_ += value;
}

void LagHistory::add(const LagSample& sample) {
    // If the wall clock stepped back, samples "from the future" would draw the chart backwards.
    while (!samples_.empty() && samples_.back().unix_seconds > sample.unix_seconds) {
        samples_.pop_back();
    }
    samples_.push_back(sample);
    const std::int64_t oldest = sample.unix_seconds - window_;
    while (samples_.front().unix_seconds < oldest) samples_.pop_front();
}

bool is_ready(const Snapshot& snapshot, const RouteOptions& options) {
    return snapshot.state == "streaming" && snapshot.lag_seconds <= options.max_ready_lag_seconds;
}

std::string render_status_json(const Snapshot& snapshot) {
    return status_json(snapshot, RouteOptions{});
}

Response route(const Request& request, const Snapshot& snapshot, const RouteOptions& options) {
    const bool head = request.method == "HEAD";
    Response r;
    if (request.method != "GET" && !head) {
        r = make(405, kPlainText, "method not allowed\n");
        r.headers.emplace("Allow", "GET, HEAD");
        return r;
    }
    const std::string_view path = path_of(request.target);
    if (path == "/healthz") {
        r = make(200, kPlainText, "ok\n");
    } else if (!authorized(request, options)) {
        r = make(401, kPlainText, "unauthorized\n");
        r.headers.emplace("WWW-Authenticate", "Bearer realm=\"authsync\"");
    } else if (path == "/status") {
        r = make(200, "application/json", status_json(snapshot, options));
    } else if (path == "/metrics") {
        r = make(200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(snapshot));
    } else if (path == "/readyz") {
        r = is_ready(snapshot, options)
                ? make(200, kPlainText, "ready\n")
                : make(503, kPlainText, not_ready_reason(snapshot, options) + "\n");
    } else if (path == "/" || path == "/index.html") {
        r = page_response(snapshot);
    } else {
        r = make(404, kPlainText, "not found\n");
    }
    // Every answer describes this instant; no proxy or browser should serve it later.
    r.headers.emplace("Cache-Control", "no-store");
    if (head) r.body.clear();
    return r;
}

}  // namespace authsync::status
