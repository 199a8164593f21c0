// Quoting for SQL text that authsync builds itself. Values travel as parameters, except in a
// small apply statement that shares a simple query with its SAVEPOINT (escaped_literal).
#pragma once

#include <string>
#include <string_view>

namespace authsync {

// "name" with embedded quotes doubled: works for any name, including capitals, spaces, dots.
std::string quote_identifier(std::string_view name);
// 'text' with embedded quotes doubled (standard_conforming_strings, on since 9.1).
std::string quote_literal(std::string_view text);
// E'text' with quotes and backslashes doubled: the same value whatever
// standard_conforming_strings says. For any text without NUL (which PostgreSQL text excludes).
std::string escaped_literal(std::string_view text);
// "schema"."table"
std::string quote_qualified(std::string_view schema, std::string_view name);

}  // namespace authsync
