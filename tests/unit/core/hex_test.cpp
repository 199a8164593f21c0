#include <catch2/catch.hpp>

#include "authsync/core/error.hpp"
#include "authsync/core/hex.hpp"

using namespace authsync;

TEST_CASE("hex decodes with or without the bytea \\x prefix", "[hex]") {
    auto a = hex_decode("\\x4201ff");
    auto b = hex_decode("4201FF");
    REQUIRE(a.size() == 3);
    CHECK(a == b);
    CHECK(std::to_integer<int>(a[0]) == 0x42);
    CHECK(std::to_integer<int>(a[2]) == 0xff);
    CHECK(hex_encode(a) == "4201ff");
    CHECK(hex_decode("").empty());
}

TEST_CASE("malformed hex names the problem", "[hex]") {
    CHECK_THROWS_WITH(hex_decode("abc"), Catch::Contains("odd number"));
    CHECK_THROWS_WITH(hex_decode("zz"), Catch::Contains("position 0"));
    CHECK_THROWS_WITH(hex_decode("\\x0g"), Catch::Contains("position 3"));
    CHECK_THROWS_AS(hex_decode("\\x0"), ProtocolError);
}
