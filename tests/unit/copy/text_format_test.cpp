// COPY text format, on rows captured from PostgreSQL 15 (tests/fixtures/copy/types.sql).
#include <catch2/catch.hpp>

#include <fstream>

#include "authsync/copy/text_format.hpp"
#include "authsync/core/error.hpp"
#include "fixtures.hpp"

using namespace authsync;
using pgoutput::ColumnKind;
using pgoutput::TupleData;

namespace {

std::vector<std::string> captured_rows() {
    std::ifstream f(test::fixture_path("copy/types.copy"));
    std::vector<std::string> rows;
    std::string line;
    while (std::getline(f, line)) rows.push_back(line);
    return rows;
}

}  // namespace

TEST_CASE("captured COPY rows parse into the values that were inserted", "[copy]") {
    auto rows = captured_rows();
    REQUIRE(rows.size() == 2);
    TupleData t;
    copy::parse_text_row(rows[0], 16, t);
    CHECK(t[0].value == "1");
    CHECK(t[2].value == "9007199254740993");
    CHECK(t[6].value == "h\xc3\xa9llo w\xc3\xb6rld");
    CHECK(t[12].value == "{\"a\": null, \"b\": [1, 2]}");
    CHECK(t[14].value == "\\xdeadbeef");  // bytea's own hex output, backslash unescaped
    CHECK(t[15].value == "{a,\"b c\",NULL,\"d\\\"e\"}");

    copy::parse_text_row(rows[1], 16, t);
    CHECK(t[1].kind == ColumnKind::Null);
    CHECK(t[6].kind == ColumnKind::Text);
    CHECK(t[6].value == "tab\there\nnewline \\ backslash \r cr");
    CHECK(t[12].value ==
          "{\"nl\": \"a\\nb\", \"uni\": \"\xc3\xa9\", \"quote\": \"say \\\"hi\\\"\"}");
    CHECK(t[13].kind == ColumnKind::Null);
    CHECK(t[15].value == "{\"x\ty\"}");
}

TEST_CASE("escaping for COPY input round-trips through the parser", "[copy]") {
    auto rows = captured_rows();
    TupleData t, again;
    copy::parse_text_row(rows[1], 16, t);
    std::string line;
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (i) line += '\t';
        if (t[i].kind == ColumnKind::Null)
            line += "\\N";
        else
            copy::append_text_field(line, t[i].value);
    }
    copy::parse_text_row(line, 16, again);
    CHECK(again == t);
}

TEST_CASE("octal, hex and unknown escapes decode as COPY does", "[copy]") {
    TupleData t;
    copy::parse_text_row("\\101\\x42\\q\\\\\t\\b\\f\\v", 2, t);
    CHECK(t[0].value == "ABq\\");
    CHECK(t[1].value == "\b\f\v");
    copy::parse_text_row("\t", 2, t);
    CHECK(t[0].value.empty());
    CHECK(t[1].value.empty());
    CHECK(t[0].kind == ColumnKind::Text);
}

TEST_CASE("a COPY row with the wrong width or a dangling backslash is an error", "[copy]") {
    TupleData t;
    CHECK_THROWS_WITH(copy::parse_text_row("a\tb", 3, t), Catch::Contains("2 columns, expected 3"));
    CHECK_THROWS_WITH(copy::parse_text_row("a\tb\tc", 2, t), Catch::Contains("more than 2"));
    CHECK_THROWS_AS(copy::parse_text_row("abc\\", 1, t), ProtocolError);
}
