// What `authsync status` prints: one line per field that has a SummaryLine (fields.cpp), from a
// /status document read back with read_status_json.
#include <fmt/format.h>

#include "authsync/status/fields.hpp"

namespace authsync::status {

std::string render_summary(const Report& report, std::span<const Field> list) {
    std::string out;
    for (const Field& field : list) {
        if (!field.summary) continue;
        out += fmt::format("{:<10}{}\n", fmt::format("{}:", field.summary->label),
                           field.summary->text(report));
    }
    return out;
}

}  // namespace authsync::status
