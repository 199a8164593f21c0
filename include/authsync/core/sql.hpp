// Quoting for SQL text that authsync builds itself. Values always travel as parameters; only
// identifiers (and, in utility commands that take no parameters, names) are quoted here.
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
