// ASCII text helpers for protocol and format text (HTTP headers, PostgreSQL's output, hex
// lines): no locale, no Unicode. Each caller names the whitespace its format allows. Pure.
#pragma once

#include <algorithm>
#include <string_view>

namespace authsync {

// `text` without the leading and trailing characters that are in `whitespace`.
inline std::string_view trim(std::string_view text, std::string_view whitespace) {
    const auto first = text.find_first_not_of(whitespace);
    if (first == std::string_view::npos) return {};
    return text.substr(first, text.find_last_not_of(whitespace) - first + 1);
}

// Equal but for the case of ASCII letters.
inline bool iequals_ascii(std::string_view a, std::string_view b) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [&](char x, char y) { return lower(x) == lower(y); });
}

}  // namespace authsync
