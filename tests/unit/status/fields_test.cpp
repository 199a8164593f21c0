// The status model: every view is derived from the one list of fields.
#include "authsync/status/fields.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "authsync/status/router.hpp"

using namespace authsync;
using namespace authsync::status;

namespace {

// A document as a streaming engine writes it, every field known.
constexpr const char* kDocument = R"({
  "state": "streaming",
  "slot": "authsync",
  "publication": "authsync_pub",
  "version": "0.1.0",
  "lag_bytes": 256,
  "lag_seconds": 2.5,
  "received_lsn": "0/16B3748",
  "applied_lsn": "0/16B3700",
  "flushed_lsn": "0/16B3600",
  "provider_wal_lsn": "100/16B3800",
  "last_commit_time": "2024-05-01T11:59:57.250000Z",
  "last_applied_at": "2024-05-01T11:59:58.500000Z",
  "e2e_latency_ms": 12.5,
  "counters": {
    "txns_applied": 42,
    "batches": 7,
    "batches_chained": 0,
    "target_round_trips": 0,
    "reconnects": 1,
    "errors": 3,
    "dead_letters": 2,
    "rows_applied": {
      "public.users": {
        "upserts": 40,
        "deletes": 2
      }
    }
  },
  "targets": {
    "tenant-a": {
      "state": "streaming",
      "error": null,
      "durable_lsn": "100/16B3700",
      "lag_bytes": 256,
      "checkpoint_commits": 3,
      "rows_applied": {
        "public.users": {
          "upserts": 30,
          "deletes": 1
        }
      }
    },
    "tenant-b": {
      "state": "detached",
      "error": "target tenant-b: could not connect to host=127.0.0.1 port=5433 dbname=b",
      "durable_lsn": "100/16B0000",
      "lag_bytes": 14336,
      "checkpoint_commits": 0,
      "rows_applied": {
        "public.users": {
          "upserts": 10,
          "deletes": 1
        }
      }
    }
  },
  "transport": {
    "role": "sink",
    "frames": 120,
    "frame_bytes": 65536,
    "marks": 5,
    "frames_skipped": 4,
    "redeliveries": 2,
    "stream_pending": 17,
    "unacked": 3,
    "copies": 1
  },
  "slot_health": {
    "wal_status": "reserved",
    "safe_wal_size_bytes": -4096,
    "retained_wal_bytes": 1048576,
    "checked_at": "2024-05-01T11:59:50.000000Z"
  },
  "last_error": {
    "message": "connection to provider lost",
    "at": "2024-05-01T11:58:20.000000Z"
  },
  "snapshot": {
    "public.users": {
      "rows_copied": 5000,
      "rows_estimated": 4990
    }
  },
  "uptime_seconds": 3600.5,
  "ready": true
}
)";

Report streaming() {
    return read_status_json(kDocument, fields()).value();
}

// Where a field sits in the document.
const nlohmann::ordered_json* find_in(const nlohmann::ordered_json& doc, const Field& field) {
    const auto* in = &doc;
    if (!field.json->group.empty()) {
        const auto group = doc.find(std::string(field.json->group));
        if (group == doc.end()) return nullptr;
        in = &*group;
    }
    const auto it = in->find(std::string(field.name));
    return it == in->end() ? nullptr : &*it;
}

// `# TYPE name type` lines of an exposition, by name.
std::map<std::string, std::string> families(const std::string& exposition) {
    std::map<std::string, std::string> types;
    std::istringstream in(exposition);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("# TYPE ", 0) != 0) continue;
        const auto space = line.find(' ', 7);
        types[line.substr(7, space - 7)] = line.substr(space + 1);
    }
    return types;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("every field shows in each view it declares, and nothing outside the list shows",
          "[status]") {
    Report report = streaming();
    // What the engine keeps beside the document, so that every family and section has samples.
    Histogram latency({0.01, 0.1, 1});
    latency.observe(0.02);
    LagHistory history;
    history.add({report.snapshot.now.unix_micros() / 1'000'000 - 30, 2.5, 256});
    report.snapshot.batch_apply_seconds = &latency;
    report.snapshot.e2e_latency_seconds = &latency;
    report.snapshot.lag_history = &history;
    const Snapshot& s = report.snapshot;
    const auto doc = nlohmann::ordered_json::parse(render_status_json(report, fields()));
    const auto exposition = render_metrics(s, fields());
    const auto types = families(exposition);
    const auto page = render_page(s, fields());
    const auto summary = lines_of(render_summary(report, fields()));

    std::size_t keys = 0;
    std::set<std::string> top_level;
    std::set<std::string> groups;
    std::size_t metrics = 0;
    std::size_t rows = 0;
    std::size_t lines = 0;
    std::size_t last_row_at = 0;
    for (const Field& field : fields()) {
        INFO(field.name);
        if (field.json) {
            ++keys;
            top_level.insert(
                std::string(field.json->group.empty() ? field.name : field.json->group));
            if (!field.json->group.empty()) groups.insert(std::string(field.json->group));
            CHECK(find_in(doc, field) != nullptr);
        }
        if (field.metric) {
            ++metrics;
            CHECK(types.count(std::string(field.metric->name)) == 1);
            CHECK(types.at(std::string(field.metric->name)) == field.metric->type);
            CHECK(count_of(exposition, "# HELP " + std::string(field.metric->name) + " " +
                                           std::string(field.metric->help) + "\n") == 1);
        }
        if (field.page) {
            const PageItem& item = *field.page;
            std::string shown;
            switch (item.place) {
                case Place::Row: shown = "<dt>" + std::string(item.label) + "</dt>"; break;
                case Place::Section: shown = "<h2>" + std::string(item.label) + "</h2>"; break;
                case Place::Header:
                case Place::Footer: shown = item.html(s); break;
            }
            CHECK(count_of(page, shown) == 1);
            if (item.place == Place::Row) {
                // Rows follow the list's order.
                ++rows;
                CHECK(page.find(shown) > last_row_at);
                last_row_at = page.find(shown);
            }
        }
        if (field.summary) {
            REQUIRE(lines < summary.size());
            CHECK(summary[lines].rfind(std::string(field.summary->label) + ":", 0) == 0);
            ++lines;
        }
    }
    // Nothing is shown that the list does not declare.
    std::size_t keys_written = 0;
    std::set<std::string> top_level_written;
    for (const auto& [key, value] : doc.items()) {
        top_level_written.insert(key);
        keys_written += groups.count(key) ? value.size() : 1;
    }
    CHECK(keys_written == keys);
    CHECK(top_level_written == top_level);
    CHECK(types.size() == metrics);
    CHECK(count_of(page, "<dt>") == rows);
    CHECK(summary.size() == lines);
}

TEST_CASE("a field added to the list shows in every view without a change to a renderer",
          "[status]") {
    const Report report = streaming();
    std::vector<Field> list = fields();
    // Declared as a new counter would be, over data the snapshot already has.
    list.push_back(Field{
        .name = "widgets",
        .json = JsonKey{
            "counters", [](const Report& r) { return Json(r.snapshot.batches * 10); },
            [](const Json& j, Report& r) { r.snapshot.batches = j.get<std::uint64_t>() / 10; }},
        .metric =
            Metric{"authsync_widgets_total", "counter", "Widgets made.",
                   [](const Snapshot& s) {
                       return std::vector<MetricSample>{{"", {}, std::to_string(s.batches * 10)}};
                   }},
        .page = PageItem{Place::Row, "Widgets", "widgets",
                         [](const Snapshot& s) { return std::to_string(s.batches * 10); }},
        .summary =
            SummaryLine{"widgets",
                        [](const Report& r) { return std::to_string(r.snapshot.batches * 10); }},
    });
    const auto doc = nlohmann::json::parse(render_status_json(report, list));
    CHECK(doc["counters"]["widgets"] == 70);
    CHECK_THAT(render_metrics(report.snapshot, list),
               Catch::Contains("# HELP authsync_widgets_total Widgets made.\n"
                               "# TYPE authsync_widgets_total counter\n"
                               "authsync_widgets_total 70\n"));
    CHECK_THAT(render_page(report.snapshot, list),
               Catch::Contains("<dt>Widgets</dt><dd id=\"widgets\">70</dd>\n</dl>"));
    CHECK_THAT(render_summary(report, list), Catch::EndsWith("widgets:  70\n"));
    // And it reads back: the document alone sets batches here.
    const auto read = read_status_json(R"({"counters": {"widgets": 30}})", list);
    REQUIRE(read);
    CHECK(read->snapshot.batches == 3);
    // The list everyone else uses has no such field.
    CHECK_FALSE(
        nlohmann::json::parse(render_status_json(report.snapshot))["counters"].contains("widgets"));
}

TEST_CASE("the status document reads back into the report it was written from", "[status]") {
    const Report report = streaming();
    CHECK(render_status_json(report, fields()) == kDocument);

    Report unknown;
    unknown.snapshot.state = "starting";
    Report odd = report;
    odd.snapshot.lag_seconds = std::nan("");
    odd.snapshot.slot_health = SlotHealth{};
    odd.snapshot.slot_health.wal_status = "vanished";
    odd.snapshot.last_error_at.reset();
    odd.snapshot.e2e_latency_ms.reset();
    odd.snapshot.snapshot_progress["public.more"] = CopyProgress{3, std::nullopt};
    odd.snapshot.last_error = "no \"quotes\" \\ or\nnewlines lost";
    odd.ready = false;
    for (const Report* each : std::vector<const Report*>{&report, &unknown, &odd}) {
        const auto written = render_status_json(*each, fields());
        INFO(written);
        const auto read = read_status_json(written, fields());
        REQUIRE(read);
        CHECK(read->ready == each->ready);
        CHECK(render_status_json(*read, fields()) == written);
    }
    CHECK(std::isnan(
        read_status_json(render_status_json(odd, fields()), fields())->snapshot.lag_seconds));
}

TEST_CASE("a value of another type in the document leaves the field as it was", "[status]") {
    const auto read = read_status_json(
        R"({"state": 7, "applied_lsn": "zero", "lag_bytes": -1, "counters": {"txns_applied": "many",
            "batches": 4}, "slot_health": [], "last_error": "text", "ready": "yes"})",
        fields());
    REQUIRE(read);
    const Snapshot& s = read->snapshot;
    CHECK(s.state.empty());
    CHECK(s.applied_lsn == Lsn{});
    CHECK(s.lag_bytes == 0);
    CHECK(s.txns_applied == 0);
    CHECK(s.batches == 4);
    CHECK_FALSE(s.slot_health.wal_status);
    CHECK(s.last_error.empty());
    CHECK_FALSE(read->ready);
    for (const char* not_a_document : {"", "nope", "[]", "\"streaming\"", "{\"state\":"}) {
        INFO(not_a_document);
        CHECK_FALSE(read_status_json(not_a_document, fields()));
    }
}

TEST_CASE("authsync status prints one line per summary field", "[status]") {
    const Report report = streaming();
    CHECK(render_summary(report, fields()) ==
          "state:    streaming (ready)\n"
          "lag:      256 B, 2.5 s\n"
          "applied:  0/16B3700 (provider at 100/16B3800)\n"
          "latency:  12.5 ms end to end\n"
          "targets:  2, worst tenant-b lag 14.0 kB\n"
          "slot:     authsync wal_status=reserved retained=1.0 MB\n"
          "error:    connection to provider lost (at 2024-05-01T11:58:20.000000Z)\n");
    // What a starting engine's document reads as; a field missing from it shows as unknown.
    const auto starting =
        read_status_json(R"({"state": "starting", "slot": "authsync"})", fields());
    REQUIRE(starting);
    CHECK(render_summary(*starting, fields()) ==
          "state:    starting (not ready)\n"
          "lag:      0 B, 0.0 s\n"
          "applied:  0/0 (provider at 0/0)\n"
          "latency:  no heartbeat yet\n"
          "targets:  none reported\n"
          "slot:     authsync wal_status=unknown\n"
          "error:    none\n");
    Report lagging = report;
    lagging.snapshot.lag_bytes = 5ull * 1024 * 1024 * 1024;
    lagging.snapshot.lag_seconds = std::nan("");
    lagging.snapshot.last_error_at.reset();
    lagging.ready = false;
    const auto lines = lines_of(render_summary(lagging, fields()));
    REQUIRE(lines.size() == 7);
    CHECK(lines[0] == "state:    streaming (not ready)");
    CHECK(lines[1] == "lag:      5.0 GB, unknown");
    CHECK(lines[6] == "error:    connection to provider lost (at ?)");
}

TEST_CASE("each target shows with its lag, worst first, in every view", "[status][targets]") {
    const Report report = streaming();
    const Snapshot& s = report.snapshot;
    REQUIRE(s.targets.size() == 2);
    CHECK(s.targets.at("tenant-b").lag_bytes == 14336);
    CHECK(s.targets.at("tenant-a").checkpoint_commits == 3);
    CHECK(s.targets.at("tenant-a").rows_applied.at("public.users").upserts == 30);
    const auto doc = nlohmann::json::parse(render_status_json(report, fields()));
    CHECK(doc["targets"]["tenant-a"]["durable_lsn"] == "100/16B3700");
    // A detached target says so, and why; one that streams has no error.
    CHECK(doc["targets"]["tenant-b"]["state"] == "detached");
    CHECK(s.targets.at("tenant-b").error.find("could not connect") != std::string::npos);
    CHECK(doc["targets"]["tenant-a"]["error"].is_null());
    const auto exposition = render_metrics(s, fields());
    CHECK_THAT(exposition, Catch::Contains("authsync_target_detached{target=\"tenant-b\"} 1"));
    CHECK_THAT(exposition, Catch::Contains("authsync_target_detached{target=\"tenant-a\"} 0"));
    CHECK_THAT(exposition, Catch::Contains("authsync_target_lag_bytes{target=\"tenant-b\"} 14336"));
    CHECK_THAT(exposition,
               Catch::Contains("authsync_target_rows_applied_total{target=\"tenant-a\",mapping="
                               "\"public.users\",op=\"upsert\"} 30"));
    // The page lists the worst lag first.
    const auto page = render_page(s, fields());
    const auto table = page.find("<table id=\"targets\">");
    REQUIRE(table != std::string::npos);
    CHECK(page.find("tenant-b", table) < page.find("tenant-a", table));
    CHECK_THAT(render_summary(report, fields()),
               Catch::Contains("targets:  2, worst tenant-b lag 14.0 kB"));
}
