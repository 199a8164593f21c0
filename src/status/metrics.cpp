// Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` before each family's samples,
// names prefixed authsync_, base units (seconds, bytes), counters ending in _total. A family
// with no sample (e.g. a histogram the engine does not keep) is left out entirely. Which
// families there are, and their samples, is each field's Metric (fields.cpp).
#include <fmt/format.h>

#include "authsync/status/fields.hpp"
#include "authsync/status/router.hpp"
#include "text.hpp"

namespace authsync::status {

std::string render_metrics(const Snapshot& s, std::span<const Field> list) {
    std::string out;
    for (const Field& field : list) {
        if (!field.metric) continue;
        const Metric& m = *field.metric;
        const auto samples = m.samples(s);
        if (samples.empty()) continue;
        // HELP text escapes backslash and newline; ours are constants without either.
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", m.name, m.help, m.name, m.type);
        for (const MetricSample& sample : samples) {
            out += m.name;
            out += sample.suffix;
            if (!sample.labels.empty()) {
                out += '{';
                bool first = true;
                for (const auto& [key, value] : sample.labels) {
                    if (!first) out += ',';
                    first = false;
                    out += fmt::format("{}=\"{}\"", key, detail::label_escape(value));
                }
                out += '}';
            }
            out += ' ';
            out += sample.value;
            out += '\n';
        }
    }
    return out;
}

std::string render_metrics(const Snapshot& snapshot) {
    return render_metrics(snapshot, fields());
}

}  // namespace authsync::status
