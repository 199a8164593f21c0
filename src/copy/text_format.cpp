#include "authsync/copy/text_format.hpp"

#include <fmt/format.h>

#include "authsync/core/error.hpp"
#include "authsync/core/hex.hpp"

namespace authsync::copy {

namespace {

bool is_octal(char c) {
    return c >= '0' && c <= '7';
}

// Unescapes one field [begin, end) of the row.
void unescape(std::string_view field, std::string& out, std::size_t column) {
    out.clear();
    out.reserve(field.size());
    for (std::size_t i = 0; i < field.size(); ++i) {
        char c = field[i];
        if (c != '\\') {
            out += c;
            continue;
        }
        if (++i == field.size()) {
            throw ProtocolError(
                fmt::format("malformed COPY row: backslash at the end of column {}", column + 1));
        }
        char e = field[i];
        switch (e) {
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'v': out += '\v'; break;
            case 'x': {
                int v = 0, digits = 0;
                while (digits < 2 && i + 1 < field.size() && hex_value(field[i + 1]) >= 0) {
                    v = v * 16 + hex_value(field[++i]);
                    ++digits;
                }
                if (digits == 0)
                    out += 'x';  // "\x" without digits is a plain x, as in COPY
                else
                    out += static_cast<char>(v);
                break;
            }
            default:
                if (is_octal(e)) {
                    int v = e - '0', digits = 1;
                    while (digits < 3 && i + 1 < field.size() && is_octal(field[i + 1])) {
                        v = v * 8 + (field[++i] - '0');
                        ++digits;
                    }
                    out += static_cast<char>(v & 0xff);
                } else {
                    out += e;  // \\ and any other escaped character stand for themselves
                }
        }
    }
}

}  // namespace

void parse_text_row(std::string_view line, std::size_t expected_columns, pgoutput::TupleData& out) {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    out.resize(expected_columns);
    std::size_t column = 0;
    std::size_t start = 0;
    for (;;) {
        std::size_t tab = line.find('\t', start);
        std::string_view field = line.substr(
            start, tab == std::string_view::npos ? std::string_view::npos : tab - start);
        if (column >= expected_columns) {
            throw ProtocolError(
                fmt::format("malformed COPY row: more than {} columns", expected_columns));
        }
        auto& col = out[column];
        if (field == "\\N") {
            col.kind = pgoutput::ColumnKind::Null;
            col.value.clear();
        } else {
            col.kind = pgoutput::ColumnKind::Text;
            unescape(field, col.value, column);
        }
        ++column;
        if (tab == std::string_view::npos) break;
        start = tab + 1;
    }
    if (column != expected_columns) {
        throw ProtocolError(
            fmt::format("malformed COPY row: {} columns, expected {}", column, expected_columns));
    }
}

void append_text_field(std::string& out, std::string_view value) {
    out.reserve(out.size() + value.size() + 8);
    for (char c : value) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\t': out += "\\t"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            default: out += c;
        }
    }
}

}  // namespace authsync::copy
