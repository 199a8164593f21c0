// Text helpers shared by the status renderers (private to src/status): HTML and Prometheus
// escaping, and number formatting Prometheus parses. Error messages may carry bytes from the
// server in any encoding, and Prometheus rejects a scrape with invalid UTF-8 labels: both
// escapes first write ill-formed UTF-8 as \xHH (escape_ill_formed_utf8, core/utf8.hpp), the
// program's one repair policy, which hides nothing.
#pragma once

#include <string>
#include <string_view>

namespace authsync::status::detail {

// For HTML text and attribute values: & < > " ' as entities.
std::string html_escape(std::string_view text);

// A label value per the text exposition format: backslash, double quote and newline escaped.
std::string label_escape(std::string_view text);

// A sample value: shortest round-trip form ("0.25", "1e-06"), "+Inf", "-Inf", "NaN".
std::string prom_number(double value);

}  // namespace authsync::status::detail
