#include <catch2/catch.hpp>

#include "authsync/core/error.hpp"
#include "authsync/core/lsn.hpp"

using authsync::durable_point;
using authsync::Lsn;

TEST_CASE("an LSN parses and formats as X/X in upper-case hex", "[lsn]") {
    auto lsn = Lsn::parse("0/16B3748");
    REQUIRE(lsn);
    CHECK(lsn->value == 0x16B3748);
    CHECK(lsn->to_string() == "0/16B3748");
    CHECK(Lsn::parse("16/b374d848")->value == 0x16B374D848ULL);
    CHECK(Lsn::parse("16/b374d848")->to_string() == "16/B374D848");
    CHECK(Lsn::parse("FFFFFFFF/FFFFFFFF")->value == 0xFFFFFFFFFFFFFFFFULL);
    CHECK(Lsn{}.to_string() == "0/0");
}

TEST_CASE("malformed LSN text is rejected", "[lsn]") {
    for (const char* bad : {"", "/", "0/", "/0", "0", "0/0/0", "g/0", "0/x1", "123456789/0",
                            "0/123456789", " 0/1", "0/1 ", "-1/0", "+1/0"}) {
        INFO(bad);
        CHECK_FALSE(Lsn::parse(bad));
    }
    CHECK_THROWS_AS(Lsn::parse_or_throw("zz"), authsync::ProtocolError);
}

TEST_CASE("LSNs order and subtract as WAL positions", "[lsn]") {
    Lsn a{0x100000000ULL}, b{0x1FFFFFFFFULL};
    CHECK(a < b);
    CHECK(authsync::lsn_bytes_between(a, b) == 0xFFFFFFFFULL);
    CHECK(authsync::lsn_bytes_between(b, a) == 0);
    CHECK_FALSE(Lsn{}.is_valid());
    CHECK(Lsn{1}.is_valid());
}

TEST_CASE("an insert position inside a page header is durable from the page's start", "[core]") {
    constexpr std::uint64_t page = 8192;
    // After a record that ended on a boundary: past the short (24) or long (40) header.
    CHECK(durable_point(Lsn(5 * page + 24), page) == Lsn(5 * page));
    CHECK(durable_point(Lsn(0x1000000 + 40), page) == Lsn(0x1000000));
    // Anywhere else, the position itself.
    CHECK(durable_point(Lsn(5 * page + 48), page) == Lsn(5 * page + 48));
    CHECK(durable_point(Lsn(5 * page + 8000), page) == Lsn(5 * page + 8000));
    CHECK(durable_point(Lsn(0x16B3748), page) == Lsn(0x16B3748));
    // Other block sizes.
    CHECK(durable_point(Lsn(3 * 32768 + 24), 32768) == Lsn(3 * 32768));
}
