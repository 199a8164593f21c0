#include "authsync/core/utf8.hpp"

#include <catch2/catch.hpp>

using namespace authsync;

TEST_CASE("well-formed UTF-8 is told from ill-formed sequences", "[core]") {
    CHECK(is_valid_utf8(""));
    CHECK(is_valid_utf8("plain ASCII"));
    CHECK(is_valid_utf8("Zoë Ångström 日本語 \xF0\x9F\x98\x80"));
    CHECK(is_valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
    CHECK_FALSE(is_valid_utf8("\xFF"));
    CHECK_FALSE(is_valid_utf8("a\xC3"));             // truncated at the end
    CHECK_FALSE(is_valid_utf8("\xC0\x80"));          // overlong
    CHECK_FALSE(is_valid_utf8("\xED\xA0\x80"));      // a surrogate
    CHECK_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
    CHECK_FALSE(is_valid_utf8("\x83\x5C"));          // SJIS bytes
}

TEST_CASE("ill-formed bytes are shown as \\xHH and well-formed text is left alone", "[core]") {
    CHECK(escape_ill_formed_utf8("Zoë") == "Zoë");
    CHECK(escape_ill_formed_utf8("a\\xFF stays") == "a\\xFF stays");
    CHECK(escape_ill_formed_utf8("Bad\xFF"
                                 "Byte") == "Bad\\xFFByte");
    CHECK(escape_ill_formed_utf8("\xE2\x82x") == "\\xE2\\x82x");
    CHECK(escape_ill_formed_utf8("ok\xC3") == "ok\\xC3");
    CHECK(is_valid_utf8(escape_ill_formed_utf8("\xC0\x80\xED\xA0\x80\xF8")));
}
