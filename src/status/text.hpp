// Text helpers shared by the status renderers (private to src/status): UTF-8 repair, HTML and
// Prometheus escaping, and number formatting Prometheus parses.
#pragma once

#include <string>
#include <string_view>

namespace authsync::status::detail {

// `text` with every invalid UTF-8 sequence replaced by U+FFFD. Error messages may carry bytes
// from the server in any encoding; Prometheus rejects a scrape with invalid UTF-8 labels.
std::string valid_utf8(std::string_view text);

// For HTML text and attribute values: & < > " ' as entities (after valid_utf8).
std::string html_escape(std::string_view text);

// A label value per the text exposition format: backslash, double quote and newline escaped.
std::string label_escape(std::string_view text);

// A sample value: shortest round-trip form ("0.25", "1e-06"), "+Inf", "-Inf", "NaN".
std::string prom_number(double value);

}  // namespace authsync::status::detail
