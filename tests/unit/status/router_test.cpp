#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "authsync/status/router.hpp"

using namespace authsync;
using namespace authsync::status;
using nlohmann::json;

namespace {

// 2024-05-01T12:00:00Z
constexpr std::int64_t kNowUnix = 1'714'564'800;

PgTimestamp unix_time(std::int64_t seconds, std::int64_t micros = 0) {
    return PgTimestamp::from_unix_micros(seconds * 1'000'000 + micros);
}

// What the engine would own; the snapshot points into it.
struct Engine {
    Histogram batch_apply{{0.01, 0.1, 1}};
    Histogram e2e{{0.001, 0.01, 0.1}};
    LagHistory history;
    Snapshot snapshot;

    Engine() {
        batch_apply.observe(0.005);
        batch_apply.observe(0.1);
        batch_apply.observe(3);
        e2e.observe(0.000001);
        e2e.observe(0.02);
        for (int i = 0; i < 10; ++i) {
            history.add({kNowUnix - 600 + i * 60, 0.5 * i, static_cast<std::uint64_t>(i) * 100});
        }
        Snapshot& s = snapshot;
        s.now = unix_time(kNowUnix);
        s.version = "0.1.0";
        s.state = "streaming";
        s.slot = "authsync";
        s.publication = "authsync_pub";
        s.received_lsn = Lsn{0x16B3748};
        s.applied_lsn = Lsn{0x16B3700};
        s.flushed_lsn = Lsn{0x16B3600};
        s.provider_wal_lsn = Lsn{0x100016B3800};
        s.lag_bytes = 256;
        s.lag_seconds = 2.5;
        s.last_commit_time = unix_time(kNowUnix - 3, 250'000);
        s.last_applied_at = unix_time(kNowUnix - 2, 500'000);
        s.e2e_latency_ms = 12.5;
        s.slot_health.wal_status = "reserved";
        s.slot_health.safe_wal_size_bytes = -4096;
        s.slot_health.retained_wal_bytes = 1'048'576;
        s.slot_health.checked_at = unix_time(kNowUnix - 10);
        s.txns_applied = 42;
        s.rows_applied["public.users"] = MappingRows{40, 2};
        s.batches = 7;
        s.target_round_trips = 9;
        s.reconnects = 1;
        s.errors = 3;
        s.last_error = "connection to provider lost";
        s.last_error_at = unix_time(kNowUnix - 100);
        s.uptime_seconds = 3600.5;
        s.batch_apply_seconds = &batch_apply;
        s.e2e_latency_seconds = &e2e;
        s.lag_history = &history;
    }
};

Snapshot unknown_snapshot() {
    Snapshot s;
    s.now = unix_time(kNowUnix);
    s.version = "0.1.0";
    s.state = "starting";
    s.slot = "authsync";
    s.publication = "authsync_pub";
    return s;
}

Request get(std::string target, std::optional<std::string> authorization = std::nullopt) {
    return Request{"GET", std::move(target), std::move(authorization)};
}

const RouteOptions kOpen{};

RouteOptions with_token(std::string token) {
    RouteOptions o;
    o.token = std::move(token);
    return o;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        lines.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return lines;
}

// A strict reader of the text exposition format, enough to check what we write.
struct Sample {
    std::string name;
    std::string family;
    std::map<std::string, std::string> labels;
    double value = 0;
};

struct Exposition {
    std::map<std::string, std::string> help;
    std::map<std::string, std::string> type;
    std::vector<Sample> samples;

    std::vector<Sample> of(const std::string& name) const {
        std::vector<Sample> out;
        for (const auto& s : samples) {
            if (s.name == name) out.push_back(s);
        }
        return out;
    }
    std::optional<double> value(const std::string& name,
                                const std::map<std::string, std::string>& labels = {}) const {
        for (const auto& s : samples) {
            if (s.name == name && s.labels == labels) return s.value;
        }
        return std::nullopt;
    }
};

bool name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}

Exposition parse_exposition(const std::string& text) {
    Exposition e;
    std::set<std::string> finished;
    std::string current;
    for (const auto& line : lines_of(text)) {
        if (line.empty()) continue;
        if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
            const auto rest = line.substr(7);
            const auto space = rest.find(' ');
            if (space == std::string::npos) throw std::runtime_error("bad comment: " + line);
            auto& map = line[2] == 'H' ? e.help : e.type;
            if (map.count(rest.substr(0, space))) throw std::runtime_error("repeated: " + line);
            map[rest.substr(0, space)] = rest.substr(space + 1);
            continue;
        }
        if (line[0] == '#') throw std::runtime_error("unexpected comment: " + line);
        Sample s;
        std::size_t i = 0;
        while (i < line.size() && name_char(line[i])) ++i;
        s.name = line.substr(0, i);
        if (i < line.size() && line[i] == '{') {
            ++i;
            while (line.at(i) != '}') {
                const auto eq = line.find('=', i);
                const auto key = line.substr(i, eq - i);
                i = eq + 1;
                if (line.at(i++) != '"') throw std::runtime_error("unquoted label: " + line);
                std::string value;
                for (;;) {
                    const char c = line.at(i++);
                    if (c == '"') break;
                    if (c == '\\') {
                        const char n = line.at(i++);
                        if (n != 'n' && n != '\\' && n != '"') {
                            throw std::runtime_error("bad escape: " + line);
                        }
                        value += n == 'n' ? '\n' : n;
                    } else {
                        value += c;
                    }
                }
                s.labels[key] = value;
                if (line.at(i) == ',') ++i;
            }
            ++i;
        }
        if (line.at(i++) != ' ') throw std::runtime_error("no value: " + line);
        const std::string value = line.substr(i);
        char* end = nullptr;
        s.value = std::strtod(value.c_str(), &end);
        if (value.empty() || *end != '\0') throw std::runtime_error("bad value: " + line);
        if (value == "NaN" || std::isnan(s.value)) throw std::runtime_error("NaN: " + line);

        s.family = s.name;
        if (!e.type.count(s.family)) {
            for (const std::string suffix : {"_bucket", "_sum", "_count"}) {
                if (s.name.size() > suffix.size() &&
                    s.name.compare(s.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
                    s.family = s.name.substr(0, s.name.size() - suffix.size());
                }
            }
            const auto type = e.type.find(s.family);
            if (type == e.type.end() || type->second != "histogram") {
                throw std::runtime_error("no TYPE: " + line);
            }
        }
        if (!e.help.count(s.family)) throw std::runtime_error("no HELP: " + line);
        if (s.family != current) {
            if (finished.count(s.family)) throw std::runtime_error("family split: " + line);
            if (!current.empty()) finished.insert(current);
            current = s.family;
        }
        e.samples.push_back(std::move(s));
    }
    return e;
}

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

}  // namespace

// ---- /status -------------------------------------------------------------------------------

TEST_CASE("the status document carries positions, times, counters and readiness", "[status]") {
    Engine engine;
    const auto r = route(get("/status"), engine.snapshot, kOpen);
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "application/json");
    const auto j = json::parse(r.body);
    CHECK(j["state"] == "streaming");
    CHECK(j["slot"] == "authsync");
    CHECK(j["publication"] == "authsync_pub");
    CHECK(j["received_lsn"] == "0/16B3748");
    CHECK(j["applied_lsn"] == "0/16B3700");
    CHECK(j["flushed_lsn"] == "0/16B3600");
    CHECK(j["provider_wal_lsn"] == "100/16B3800");
    CHECK(j["lag_bytes"].is_number_integer());
    CHECK(j["lag_bytes"] == 256);
    CHECK(j["lag_seconds"] == 2.5);
    CHECK(j["last_commit_time"] == "2024-05-01T11:59:57.250000Z");
    CHECK(j["last_applied_at"] == "2024-05-01T11:59:58.500000Z");
    CHECK(j["e2e_latency_ms"] == 12.5);
    CHECK(j["slot_health"]["wal_status"] == "reserved");
    CHECK(j["slot_health"]["safe_wal_size_bytes"] == -4096);
    CHECK(j["slot_health"]["retained_wal_bytes"] == 1048576);
    CHECK(j["slot_health"]["checked_at"] == "2024-05-01T11:59:50.000000Z");
    CHECK(j["counters"]["txns_applied"] == 42);
    CHECK(j["counters"]["batches"] == 7);
    CHECK(j["counters"]["reconnects"] == 1);
    CHECK(j["counters"]["errors"] == 3);
    CHECK(j["counters"]["rows_applied"]["public.users"]["upserts"] == 40);
    CHECK(j["counters"]["rows_applied"]["public.users"]["deletes"] == 2);
    CHECK(j["last_error"]["message"] == "connection to provider lost");
    CHECK(j["last_error"]["at"] == "2024-05-01T11:58:20.000000Z");
    CHECK(j["uptime_seconds"] == 3600.5);
    CHECK(j["version"] == "0.1.0");
    CHECK(j["ready"] == true);
}

TEST_CASE("unknown times, latency, slot health and an empty error are null in the status document",
          "[status]") {
    const auto j = json::parse(render_status_json(unknown_snapshot()));
    CHECK(j["received_lsn"] == "0/0");
    CHECK(j["last_commit_time"].is_null());
    CHECK(j["last_applied_at"].is_null());
    CHECK(j["e2e_latency_ms"].is_null());
    REQUIRE(j["slot_health"].is_object());
    for (const auto* key :
         {"wal_status", "safe_wal_size_bytes", "retained_wal_bytes", "checked_at"}) {
        CHECK(j["slot_health"][key].is_null());
    }
    CHECK(j["counters"]["rows_applied"].is_object());
    CHECK(j["counters"]["rows_applied"].empty());
    CHECK(j["last_error"].is_null());
    CHECK(j["ready"] == false);
}

TEST_CASE("the status document's ready uses the route's lag threshold", "[status]") {
    Engine engine;
    engine.snapshot.lag_seconds = 30;
    RouteOptions strict;
    strict.max_ready_lag_seconds = 10;
    CHECK(json::parse(route(get("/status"), engine.snapshot, strict).body)["ready"] == false);
    CHECK(json::parse(route(get("/status"), engine.snapshot, kOpen).body)["ready"] == true);
}

TEST_CASE("bytes of a message that are not UTF-8 render everywhere as \\xHH", "[status]") {
    Engine engine;
    engine.snapshot.last_error = "bad byte \xff\xfe here";
    engine.snapshot.slot = "slot\xc3";
    const auto j = json::parse(render_status_json(engine.snapshot));
    CHECK(j["last_error"]["message"] == "bad byte \\xFF\\xFE here");
    CHECK(j["slot"] == "slot\\xC3");
    const auto metrics = render_metrics(engine.snapshot);
    // The label escape doubles the backslash.
    CHECK(contains(metrics, "slot=\"slot\\\\xC3\""));
    CHECK(contains(render_page(engine.snapshot), "bad byte \\xFF\\xFE here"));
}

TEST_CASE("a query string does not change the route", "[status]") {
    Engine engine;
    const auto r = route(get("/status?x=1&pretty"), engine.snapshot, kOpen);
    CHECK(r.status == 200);
    CHECK(json::parse(r.body)["state"] == "streaming");
    CHECK(route(get("/metrics?name[]=x"), engine.snapshot, kOpen).status == 200);
    CHECK(route(get("/?refresh"), engine.snapshot, kOpen).status == 200);
    CHECK(route(get("/nowhere?/status"), engine.snapshot, kOpen).status == 404);
}

// ---- /metrics ------------------------------------------------------------------------------

TEST_CASE("every metric family has HELP and TYPE before its samples and every line parses",
          "[status]") {
    Engine engine;
    const auto r = route(get("/metrics"), engine.snapshot, kOpen);
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
    REQUIRE(r.body.back() == '\n');
    Exposition e;
    REQUIRE_NOTHROW(e = parse_exposition(r.body));
    CHECK(e.help.size() == e.type.size());
    for (const auto& [name, type] : e.type) {
        INFO(name);
        CHECK(name.rfind("authsync_", 0) == 0);
        CHECK(e.help.count(name) == 1);
        CHECK((type == "gauge" || type == "counter" || type == "histogram"));
        const bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
        CHECK(total == (type == "counter"));
        const bool plain = !e.of(name).empty();
        const bool histogram = !e.of(name + "_count").empty();
        CHECK(plain != histogram);
    }
    for (const auto* family : {"authsync_up",
                               "authsync_info",
                               "authsync_state",
                               "authsync_lag_bytes",
                               "authsync_lag_seconds",
                               "authsync_e2e_latency_seconds",
                               "authsync_batch_apply_duration_seconds",
                               "authsync_transactions_applied_total",
                               "authsync_rows_applied_total",
                               "authsync_batches_total",
                               "authsync_target_round_trips_total",
                               "authsync_reconnects_total",
                               "authsync_errors_total",
                               "authsync_slot_retained_wal_bytes",
                               "authsync_slot_safe_wal_size_bytes",
                               "authsync_slot_wal_status",
                               "authsync_received_lsn_bytes",
                               "authsync_applied_lsn_bytes",
                               "authsync_flushed_lsn_bytes",
                               "authsync_provider_wal_lsn_bytes",
                               "authsync_last_applied_timestamp_seconds",
                               "authsync_uptime_seconds"}) {
        INFO(family);
        CHECK(e.type.count(family) == 1);
    }
}

TEST_CASE("metric samples carry the snapshot's values in base units", "[status]") {
    Engine engine;
    const auto e = parse_exposition(render_metrics(engine.snapshot));
    CHECK(e.value("authsync_up") == 1.0);
    CHECK(e.value("authsync_info",
                  {{"version", "0.1.0"}, {"slot", "authsync"}, {"publication", "authsync_pub"}}) ==
          1.0);
    CHECK(e.value("authsync_lag_bytes") == 256.0);
    CHECK(e.value("authsync_lag_seconds") == 2.5);
    CHECK(e.value("authsync_transactions_applied_total") == 42.0);
    CHECK(e.value("authsync_rows_applied_total", {{"mapping", "public.users"}, {"op", "upsert"}}) ==
          40.0);
    CHECK(e.value("authsync_rows_applied_total", {{"mapping", "public.users"}, {"op", "delete"}}) ==
          2.0);
    CHECK(e.value("authsync_batches_total") == 7.0);
    CHECK(e.value("authsync_target_round_trips_total") == 9.0);
    CHECK(e.value("authsync_reconnects_total") == 1.0);
    CHECK(e.value("authsync_errors_total") == 3.0);
    CHECK(e.value("authsync_slot_retained_wal_bytes") == 1048576.0);
    CHECK(e.value("authsync_slot_safe_wal_size_bytes") == -4096.0);
    CHECK(e.value("authsync_slot_wal_status", {{"status", "reserved"}}) == 1.0);
    CHECK(e.value("authsync_slot_wal_status", {{"status", "extended"}}) == 0.0);
    CHECK(e.value("authsync_slot_wal_status", {{"status", "unreserved"}}) == 0.0);
    CHECK(e.value("authsync_slot_wal_status", {{"status", "lost"}}) == 0.0);
    CHECK(e.value("authsync_received_lsn_bytes") == static_cast<double>(0x16B3748));
    CHECK(e.value("authsync_applied_lsn_bytes") == static_cast<double>(0x16B3700));
    CHECK(e.value("authsync_flushed_lsn_bytes") == static_cast<double>(0x16B3600));
    CHECK(e.value("authsync_provider_wal_lsn_bytes") == static_cast<double>(0x100016B3800));
    CHECK(e.value("authsync_last_applied_timestamp_seconds") ==
          static_cast<double>(kNowUnix) - 1.5);
    CHECK(e.value("authsync_uptime_seconds") == 3600.5);
}

TEST_CASE("the state gauge is 1 for the current state and 0 for the six others", "[status]") {
    Engine engine;
    engine.snapshot.state = "reconnecting";
    const auto states = parse_exposition(render_metrics(engine.snapshot)).of("authsync_state");
    REQUIRE(states.size() == 7);
    std::set<std::string> names;
    for (const auto& s : states) {
        names.insert(s.labels.at("state"));
        CHECK(s.value == (s.labels.at("state") == "reconnecting" ? 1.0 : 0.0));
    }
    CHECK(names == std::set<std::string>{"starting", "waiting", "snapshotting", "streaming",
                                         "reconnecting", "stopping", "failed"});
}

TEST_CASE("histogram buckets are cumulative and +Inf equals the count", "[status]") {
    Engine engine;
    const auto e = parse_exposition(render_metrics(engine.snapshot));
    CHECK(e.type.at("authsync_batch_apply_duration_seconds") == "histogram");
    const auto buckets = e.of("authsync_batch_apply_duration_seconds_bucket");
    REQUIRE(buckets.size() == 4);
    CHECK(buckets[0].labels.at("le") == "0.01");
    CHECK(buckets[1].labels.at("le") == "0.1");
    CHECK(buckets[2].labels.at("le") == "1");
    CHECK(buckets[3].labels.at("le") == "+Inf");
    CHECK(buckets[0].value == 1);
    CHECK(buckets[1].value == 2);
    CHECK(buckets[2].value == 2);
    CHECK(buckets[3].value == 3);
    CHECK(e.value("authsync_batch_apply_duration_seconds_count") == 3.0);
    CHECK(e.value("authsync_batch_apply_duration_seconds_sum").value_or(0) == Approx(3.105));
    for (const auto* name :
         {"authsync_batch_apply_duration_seconds", "authsync_e2e_latency_seconds"}) {
        const auto b = e.of(std::string(name) + "_bucket");
        REQUIRE(!b.empty());
        for (std::size_t i = 1; i < b.size(); ++i) CHECK(b[i].value >= b[i - 1].value);
        CHECK(b.back().labels.at("le") == "+Inf");
        CHECK(b.back().value == e.value(std::string(name) + "_count"));
    }
    const std::string text = render_metrics(engine.snapshot);
    CHECK(contains(text, "authsync_e2e_latency_seconds_bucket{le=\"0.001\"} 1\n"));
    CHECK(contains(text, "authsync_e2e_latency_seconds_sum 0.020001\n"));
}

TEST_CASE("a histogram the engine does not keep is left out of the metrics", "[status]") {
    Engine engine;
    engine.snapshot.e2e_latency_seconds = nullptr;
    engine.snapshot.batch_apply_seconds = nullptr;
    const auto text = render_metrics(engine.snapshot);
    CHECK_FALSE(contains(text, "authsync_e2e_latency_seconds"));
    CHECK_FALSE(contains(text, "authsync_batch_apply_duration_seconds"));
    CHECK_NOTHROW(parse_exposition(text));
}

TEST_CASE("label values escape backslash, double quote and newline", "[status]") {
    Engine engine;
    engine.snapshot.publication = "pub\\with \"quotes\"\nand a newline";
    engine.snapshot.rows_applied = {{"odd\"table", MappingRows{1, 0}}};
    const auto text = render_metrics(engine.snapshot);
    CHECK(contains(text, R"(publication="pub\\with \"quotes\"\nand a newline")"));
    const auto e = parse_exposition(text);
    const auto info = e.of("authsync_info");
    REQUIRE(info.size() == 1);
    CHECK(info[0].labels.at("publication") == engine.snapshot.publication);
    CHECK(e.value("authsync_rows_applied_total", {{"mapping", "odd\"table"}, {"op", "upsert"}}) ==
          1.0);
    for (const auto& line : lines_of(text)) CHECK(line.find('\r') == std::string::npos);
}

TEST_CASE("unknown slot sizes, wal status and times leave their samples out", "[status]") {
    const auto text = render_metrics(unknown_snapshot());
    const auto e = parse_exposition(text);
    CHECK_FALSE(contains(text, "authsync_slot_retained_wal_bytes"));
    CHECK_FALSE(contains(text, "authsync_slot_safe_wal_size_bytes"));
    CHECK_FALSE(contains(text, "authsync_last_applied_timestamp_seconds"));
    CHECK_FALSE(contains(text, "authsync_e2e_latency_seconds"));
    const auto wal = e.of("authsync_slot_wal_status");
    CHECK(wal.size() == 4);
    for (const auto& s : wal) CHECK(s.value == 0);
    CHECK(e.value("authsync_state", {{"state", "starting"}}) == 1.0);
    CHECK(e.value("authsync_received_lsn_bytes") == 0.0);
}

TEST_CASE("metric values are written so Prometheus parses them and never as NaN", "[status]") {
    Engine engine;
    engine.snapshot.lag_seconds = std::nan("");
    engine.snapshot.uptime_seconds = 0.25;
    const auto text = render_metrics(engine.snapshot);
    CHECK_FALSE(contains(text, "NaN"));
    CHECK_FALSE(contains(text, "nan"));
    CHECK_FALSE(contains(text, "inf\n"));
    CHECK_FALSE(contains(text, "authsync_lag_seconds "));
    CHECK(contains(text, "authsync_uptime_seconds 0.25\n"));
    CHECK(json::parse(render_status_json(engine.snapshot))["lag_seconds"].is_null());
    CHECK_NOTHROW(parse_exposition(text));
}

TEST_CASE("a state or wal status this build does not know still shows as 1", "[status]") {
    Engine engine;
    engine.snapshot.state = "paused";
    engine.snapshot.slot_health.wal_status = "vanished";
    const auto e = parse_exposition(render_metrics(engine.snapshot));
    CHECK(e.of("authsync_state").size() == 8);
    CHECK(e.value("authsync_state", {{"state", "paused"}}) == 1.0);
    CHECK(e.value("authsync_slot_wal_status", {{"status", "vanished"}}) == 1.0);
}

// ---- /healthz and /readyz ------------------------------------------------------------------

TEST_CASE("healthz answers ok whatever the state", "[status]") {
    const auto r = route(get("/healthz"), unknown_snapshot(), kOpen);
    CHECK(r.status == 200);
    CHECK(r.body == "ok\n");
}

TEST_CASE("readyz answers 200 while streaming within the lag threshold", "[status]") {
    Engine engine;
    engine.snapshot.lag_seconds = 60;
    const auto r = route(get("/readyz"), engine.snapshot, kOpen);
    CHECK(r.status == 200);
    CHECK(r.body == "ready\n");
    CHECK(is_ready(engine.snapshot, kOpen));
}

TEST_CASE("readyz answers 503 naming the state when not streaming", "[status]") {
    Engine engine;
    engine.snapshot.state = "reconnecting";
    engine.snapshot.lag_seconds = 0;
    const auto r = route(get("/readyz"), engine.snapshot, kOpen);
    CHECK(r.status == 503);
    CHECK(r.body == "not streaming: reconnecting\n");
    CHECK_FALSE(is_ready(engine.snapshot, kOpen));
}

TEST_CASE("readyz answers 503 naming the lag when it exceeds the threshold", "[status]") {
    Engine engine;
    engine.snapshot.lag_seconds = 75.2;
    const auto r = route(get("/readyz"), engine.snapshot, kOpen);
    CHECK(r.status == 503);
    CHECK(r.body == "lag 75.2 s exceeds 60 s\n");
    RouteOptions lenient;
    lenient.max_ready_lag_seconds = 90;
    CHECK(route(get("/readyz"), engine.snapshot, lenient).status == 200);
}

TEST_CASE("a lag that is not a number is not ready", "[status]") {
    Engine engine;
    engine.snapshot.lag_seconds = std::nan("");
    CHECK_FALSE(is_ready(engine.snapshot, kOpen));
    CHECK(route(get("/readyz"), engine.snapshot, kOpen).body == "lag unknown\n");
}

// ---- token ---------------------------------------------------------------------------------

TEST_CASE("with a token every path but healthz answers 401 without it", "[status]") {
    Engine engine;
    const auto options = with_token("s3cret-token");
    for (const auto* path : {"/", "/index.html", "/status", "/metrics", "/readyz", "/nowhere"}) {
        INFO(path);
        const auto r = route(get(path), engine.snapshot, options);
        CHECK(r.status == 401);
        CHECK(r.body == "unauthorized\n");
        CHECK(r.headers.at("WWW-Authenticate") == "Bearer realm=\"authsync\"");
    }
    const auto health = route(get("/healthz"), engine.snapshot, options);
    CHECK(health.status == 200);
    CHECK(health.body == "ok\n");
    CHECK(route(get("/healthz", "Bearer wrong"), engine.snapshot, options).status == 200);
}

TEST_CASE("the right bearer token is accepted", "[status]") {
    Engine engine;
    const auto options = with_token("s3cret-token");
    CHECK(route(get("/status", "Bearer s3cret-token"), engine.snapshot, options).status == 200);
    CHECK(route(get("/metrics", "bearer s3cret-token"), engine.snapshot, options).status == 200);
    CHECK(route(get("/readyz", "  Bearer   s3cret-token "), engine.snapshot, options).status ==
          200);
}

TEST_CASE("a wrong token, another scheme or a bare token is rejected", "[status]") {
    Engine engine;
    const auto options = with_token("s3cret-token");
    for (const auto* header :
         {"Bearer wrong", "Bearer s3cret-toke", "Bearer s3cret-token2", "Bearer S3CRET-TOKEN",
          "Basic s3cret-token", "s3cret-token", "Bearer", "Bearer ", "Bearers3cret-token", ""}) {
        INFO(header);
        CHECK(route(get("/status", header), engine.snapshot, options).status == 401);
    }
}

TEST_CASE("an empty configured token lets nobody in", "[status]") {
    Engine engine;
    const auto options = with_token("");
    CHECK(route(get("/status", "Bearer "), engine.snapshot, options).status == 401);
    CHECK(route(get("/status", "Bearer x"), engine.snapshot, options).status == 401);
    CHECK(route(get("/healthz"), engine.snapshot, options).status == 200);
}

TEST_CASE("the token never appears in any response", "[status]") {
    Engine engine;
    const std::string token = "s3cret-token";
    const auto options = with_token(token);
    for (const auto* path :
         {"/", "/index.html", "/status", "/metrics", "/healthz", "/readyz", "/nowhere"}) {
        for (const auto& auth : std::vector<std::optional<std::string>>{
                 std::nullopt, "Bearer " + token, "Bearer " + token + "x", "Basic " + token}) {
            for (const auto* method : {"GET", "HEAD", "POST"}) {
                INFO(path << " " << method << " " << auth.value_or("(none)"));
                const auto r = route(Request{method, path, auth}, engine.snapshot, options);
                CHECK_FALSE(contains(r.body, token));
                CHECK_FALSE(contains(r.content_type, token));
                for (const auto& [name, value] : r.headers) {
                    CHECK_FALSE(contains(name, token));
                    CHECK_FALSE(contains(value, token));
                }
            }
        }
    }
}

// ---- methods and paths ---------------------------------------------------------------------

TEST_CASE("an unknown path answers 404", "[status]") {
    Engine engine;
    const auto r = route(get("/status/extra"), engine.snapshot, kOpen);
    CHECK(r.status == 404);
    CHECK(r.body == "not found\n");
    CHECK(route(get(""), engine.snapshot, kOpen).status == 404);
}

TEST_CASE("methods other than GET and HEAD answer 405 with Allow", "[status]") {
    Engine engine;
    for (const auto* method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"}) {
        INFO(method);
        const auto r = route(Request{method, "/status", std::nullopt}, engine.snapshot, kOpen);
        CHECK(r.status == 405);
        CHECK(r.headers.at("Allow") == "GET, HEAD");
    }
}

TEST_CASE("HEAD answers like GET with an empty body", "[status]") {
    Engine engine;
    for (const auto* path : {"/", "/status", "/metrics", "/healthz", "/readyz", "/nowhere"}) {
        INFO(path);
        const auto g = route(get(path), engine.snapshot, kOpen);
        const auto h = route(Request{"HEAD", path, std::nullopt}, engine.snapshot, kOpen);
        CHECK(h.status == g.status);
        CHECK(h.content_type == g.content_type);
        CHECK(h.headers == g.headers);
        CHECK(h.body.empty());
        CHECK_FALSE(g.body.empty());
    }
}

// ---- the page ------------------------------------------------------------------------------

TEST_CASE("the page shows state, lag, positions and the last error", "[status]") {
    Engine engine;
    const auto r = route(get("/"), engine.snapshot, kOpen);
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "text/html; charset=utf-8");
    CHECK(route(get("/index.html"), engine.snapshot, kOpen).body == r.body);
    CHECK(contains(r.body, "<title>authsync</title>"));
    CHECK(contains(r.body, "id=\"state\" class=\"ok\">streaming<"));
    CHECK(contains(r.body, ">2.5</span> s"));
    CHECK(contains(r.body, ">256</span> bytes"));
    CHECK(contains(r.body, "0/16B3700"));
    CHECK(contains(r.body, "100/16B3800"));
    CHECK(contains(r.body, "connection to provider lost"));
    CHECK(contains(r.body, "id=\"lag-chart\""));
}

TEST_CASE("the page draws lag samples as a polyline with labelled axes", "[status]") {
    Engine engine;
    const auto page = render_page(engine.snapshot);
    const auto chart_at = page.find("<svg id=\"lag-chart\"");
    REQUIRE(chart_at != std::string::npos);
    const auto chart = page.substr(chart_at, page.find("</svg>", chart_at) - chart_at);
    CHECK(contains(chart, "<polyline"));
    CHECK(contains(chart, "lag (s)"));
    CHECK(contains(chart, "-15 min"));
    CHECK(contains(chart, "now"));
    // Lags up to 4.5 s: the y axis tops out at 5 s.
    CHECK(contains(chart, ">5 s<"));
    CHECK(contains(chart, ">2.5 s<"));
    // Ten samples, ten points.
    const auto points_at = chart.find("points=\"") + 8;
    const auto points = chart.substr(points_at, chart.find('"', points_at) - points_at);
    CHECK(std::count(points.begin(), points.end(), ',') == 10);
}

TEST_CASE("the page's chart says so when there are no samples in the last 15 minutes", "[status]") {
    Engine engine;
    LagHistory old;
    old.add({kNowUnix - 3600, 1, 1});
    engine.snapshot.lag_history = &old;
    auto page = render_page(engine.snapshot);
    CHECK(contains(page, "id=\"lag-chart\""));
    CHECK_FALSE(contains(page, "<polyline"));
    CHECK(contains(page, "no samples yet"));
    engine.snapshot.lag_history = nullptr;
    page = render_page(engine.snapshot);
    CHECK(contains(page, "id=\"lag-chart\""));
    CHECK(contains(page, "no samples yet"));
}

TEST_CASE("the page escapes every interpolated string", "[status]") {
    Engine engine;
    engine.snapshot.last_error = "<script>alert('x')</script> & \"more\"";
    engine.snapshot.slot = "<b>slot</b>";
    engine.snapshot.state = "<img src=x>";
    const auto page = render_page(engine.snapshot);
    CHECK(contains(page, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;"));
    CHECK(contains(page, "&lt;b&gt;slot&lt;/b&gt;"));
    CHECK(contains(page, "&lt;img src=x&gt;"));
    CHECK_FALSE(contains(page, "<script>alert"));
    CHECK_FALSE(contains(page, "<b>"));
    CHECK_FALSE(contains(page, "<img"));
}

TEST_CASE("the page refers to no other host", "[status]") {
    Engine engine;
    const auto page = render_page(engine.snapshot);
    CHECK_FALSE(contains(page, "http://"));
    CHECK_FALSE(contains(page, "https://"));
    CHECK_FALSE(contains(page, "//cdn"));
    CHECK_FALSE(contains(page, "src="));
    CHECK_FALSE(contains(page, "href="));
    CHECK_FALSE(contains(page, "@import"));
    CHECK_FALSE(contains(page, "url("));
    const auto r = route(get("/"), engine.snapshot, kOpen);
    CHECK(contains(r.headers.at("Content-Security-Policy"), "default-src 'none'"));
}

// ---- Histogram and LagHistory --------------------------------------------------------------

TEST_CASE("a value exactly on a bound counts in that bucket", "[status]") {
    Histogram h({0.1, 1, 10});
    h.observe(1);
    CHECK(h.counts() == std::vector<std::uint64_t>{0, 1, 1});
    CHECK(h.count() == 1);
    CHECK(h.sum() == 1);
}

TEST_CASE("a value above every bound counts only in the total", "[status]") {
    Histogram h({0.1, 1, 10});
    h.observe(11);
    h.observe(0.05);
    CHECK(h.counts() == std::vector<std::uint64_t>{1, 1, 1});
    CHECK(h.count() == 2);
    CHECK(h.sum() == Approx(11.05));
}

TEST_CASE("histogram bounds are sorted and infinite or repeated ones dropped", "[status]") {
    Histogram h({10, 1, std::numeric_limits<double>::infinity(), 1, 0.1});
    CHECK(h.upper_bounds() == std::vector<double>{0.1, 1, 10});
    CHECK(h.counts().size() == 3);
}

TEST_CASE("a histogram ignores values that are not finite", "[status]") {
    Histogram h({1});
    h.observe(std::nan(""));
    h.observe(std::numeric_limits<double>::infinity());
    CHECK(h.count() == 0);
    CHECK(h.sum() == 0);
}

TEST_CASE("lag history drops samples older than the window before the newest", "[status]") {
    LagHistory history(60);
    history.add({1000, 1, 1});
    history.add({1030, 2, 2});
    history.add({1060, 3, 3});
    REQUIRE(history.samples().size() == 3);  // 1000 is exactly one window old: kept
    history.add({1061, 4, 4});
    REQUIRE(history.samples().size() == 3);
    CHECK(history.samples().front().unix_seconds == 1030);
    history.add({5000, 5, 5});
    REQUIRE(history.samples().size() == 1);
    CHECK(history.samples().front().lag_seconds == 5);
}

TEST_CASE("lag history keeps a default window of 15 minutes", "[status]") {
    LagHistory history;
    for (std::int64_t t = 0; t <= 1800; t += 60) history.add({t, 0, 0});
    CHECK(history.samples().front().unix_seconds == 900);
    CHECK(history.samples().back().unix_seconds == 1800);
}

TEST_CASE("lag history drops samples from after a clock that stepped back", "[status]") {
    LagHistory history(600);
    history.add({1000, 1, 1});
    history.add({1100, 2, 2});
    history.add({1050, 3, 3});
    REQUIRE(history.samples().size() == 2);
    CHECK(history.samples().back().unix_seconds == 1050);
}
