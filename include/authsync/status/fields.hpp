// The status model: every field the endpoint shows, declared once, in fields().
//
// A Field names one datum of a Snapshot and says how each view shows it: its key in the /status
// document and how that key reads back (for `authsync status`), its Prometheus family, its
// place on the HTML page, its line in `authsync status`. The renderers below walk the list in
// its order and know no field by name, so a new field is one entry in src/status/fields.cpp
// (plus the Progress member the engine writes, when it is new data) and its test. A view a
// field has no part in is left empty. The list's order is the page's order; the document's
// keys and the metric families follow it too.
//
// Pure. Nothing here shows row data: fields are positions, times, counters, names and error
// messages.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "authsync/status/snapshot.hpp"

namespace authsync::status {

// Keys in the order written, so the document reads top-down for a human with curl.
using Json = nlohmann::ordered_json;

// What the document and `authsync status` show: the snapshot and the endpoint's verdict on it
// (`ready` depends on the route's lag threshold, not on the engine).
struct Report {
    Snapshot snapshot;
    bool ready = false;
};

// The field's key in the /status document is its name; `group` names the object it sits in
// ("" for the top level).
struct JsonKey {
    std::string_view group;
    std::function<Json(const Report&)> write;
    // From a document this build or another wrote: a value of another type, or none, leaves the
    // report as it was.
    std::function<void(const Json&, Report&)> read;
};

struct MetricSample {
    std::string_view suffix;  // "_bucket", "_sum", "_count" in a histogram; "" otherwise
    std::vector<std::pair<std::string_view, std::string>> labels;
    std::string value;  // as Prometheus reads it (detail::prom_number)
};

// One Prometheus family; with no sample (a value not known yet) it is left out entirely.
struct Metric {
    std::string_view name;  // authsync_..., base units, counters end in _total
    std::string_view type;  // gauge | counter | histogram
    std::string_view help;  // without backslash or newline
    std::function<std::vector<MetricSample>(const Snapshot&)> samples;
};

enum class Place {
    Header,   // a part of the line under the title, joined with " · "
    Row,      // <dt>label</dt><dd>html</dd> in the list of facts
    Section,  // <h2>label</h2> and html, after the list
    Footer,   // a part of the footer, joined with " · "
};

struct PageItem {
    Place place = Place::Row;
    std::string_view label;  // a row's <dt>, a section's <h2>
    std::string_view id;     // a row's <dd id>, for scripts and tests; "" for none
    std::function<std::string(const Snapshot&)> html;  // escaped already
};

// `label:` padded to ten columns, then the text.
struct SummaryLine {
    std::string_view label;
    std::function<std::string(const Report&)> text;
};

struct Field {
    std::string_view name;  // the key in the document, when it is in it
    // Each view the field is part of; the initializers let a declaration name only those.
    std::optional<JsonKey> json = std::nullopt;
    std::optional<Metric> metric = std::nullopt;
    std::optional<PageItem> page = std::nullopt;
    std::optional<SummaryLine> summary = std::nullopt;
};

// The status model, in page order.
const std::vector<Field>& fields();

// The views, over a list of fields (route() and the one-argument renderers in router.hpp use
// fields()).
std::string render_status_json(const Report& report, std::span<const Field> list);
// nullopt when `document` is not a JSON object.
std::optional<Report> read_status_json(std::string_view document, std::span<const Field> list);
std::string render_metrics(const Snapshot& snapshot, std::span<const Field> list);
std::string render_page(const Snapshot& snapshot, std::span<const Field> list);
// What `authsync status` prints.
std::string render_summary(const Report& report, std::span<const Field> list);

}  // namespace authsync::status
