// Quoting for SQL text that authsync builds itself: names, and the few literals of DDL and
// provisioning. Row values always travel as parameters.
#pragma once

#include <string>
#include <string_view>

namespace authsync {

// "name" with embedded quotes doubled: works for any name, including capitals, spaces, dots.
std::string quote_identifier(std::string_view name);
// 'text' with embedded quotes doubled (standard_conforming_strings, on since 9.1).
std::string quote_literal(std::string_view text);
// "schema"."table"
std::string quote_qualified(std::string_view schema, std::string_view name);

}  // namespace authsync
