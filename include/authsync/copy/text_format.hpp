// PostgreSQL's COPY text format: rows out of `COPY ... TO STDOUT` and into `COPY ... FROM STDIN`.
//
// A row is columns separated by tabs and ended by a newline; `\N` is NULL; backslash escapes
// \b \f \n \r \t \v, \\, octal \ooo and hex \xhh stand for bytes. The backfill reads provider
// rows with parse_text_row (into the same TupleData the stream decoder produces, so one mapper
// serves both) and writes target rows with append_text_field. Pure.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "authsync/pgoutput/messages.hpp"

namespace authsync::copy {

// Parses one row (with or without its trailing newline) into `out` (cleared first). Throws
// ProtocolError when the row does not have `expected_columns` columns or holds a bad escape.
void parse_text_row(std::string_view line, std::size_t expected_columns, pgoutput::TupleData& out);

// Appends `value` escaped for COPY text input (backslash, tab, newline, carriage return).
void append_text_field(std::string& out, std::string_view value);

}  // namespace authsync::copy
