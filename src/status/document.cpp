// The /status document, written from each field's JsonKey and read back with it (for
// `authsync status`): one declaration serves both directions.
#include "authsync/status/fields.hpp"
#include "authsync/status/router.hpp"

#include "authsync/core/utf8.hpp"

namespace authsync::status {

namespace {

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

}  // namespace

std::string render_status_json(const Report& report, std::span<const Field> list) {
    Json j = Json::object();
    for (const Field& field : list) {
        if (!field.json) continue;
        Json& into = field.json->group.empty() ? j : j[std::string(field.json->group)];
        into[std::string(field.name)] = field.json->write(report);
    }
    escape_ill_formed_strings(j);
    // Object keys (mapping names from the configuration) are not escaped above: the encoder
    // replaces what is ill-formed in them rather than throw.
    return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::optional<Report> read_status_json(std::string_view document, std::span<const Field> list) {
    const Json j = Json::parse(document.begin(), document.end(), nullptr, false);
    if (!j.is_object()) return std::nullopt;
    Report report;
    for (const Field& field : list) {
        if (!field.json) continue;
        const Json* in = &j;
        if (!field.json->group.empty()) {
            const auto group = j.find(std::string(field.json->group));
            if (group == j.end() || !group->is_object()) continue;
            in = &*group;
        }
        const auto value = in->find(std::string(field.name));
        if (value != in->end()) field.json->read(*value, report);
    }
    return report;
}

std::string render_status_json(const Snapshot& snapshot) {
    return render_status_json(Report{snapshot, is_ready(snapshot, RouteOptions{})}, fields());
}

}  // namespace authsync::status
