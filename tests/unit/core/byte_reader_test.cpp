#include <catch2/catch.hpp>

#include "authsync/core/byte_reader.hpp"
#include "authsync/core/error.hpp"
#include "authsync/core/hex.hpp"

using namespace authsync;

TEST_CASE("ByteReader reads big-endian integers and strings", "[byte_reader]") {
    auto bytes = hex_decode("01fffe0000002affffffffffffffff616200");
    ByteReader r(bytes, "test message");
    CHECK(r.read_u8() == 1);
    CHECK(r.read_i16() == -2);
    CHECK(r.read_i32() == 42);
    CHECK(r.read_i64() == -1);
    CHECK(r.read_cstring() == "ab");
    CHECK(r.at_end());
    CHECK_NOTHROW(r.expect_end());
}

TEST_CASE("ByteReader refuses to read past the end and says where", "[byte_reader]") {
    auto bytes = hex_decode("0102");
    ByteReader r(bytes, "Begin message");
    r.read_u8();
    CHECK_THROWS_WITH(r.read_i32(), Catch::Contains("Begin message") &&
                                        Catch::Contains("offset 1") &&
                                        Catch::Contains("insufficient data"));
    // A failed read consumes nothing.
    CHECK(r.offset() == 1);
    CHECK(r.read_u8() == 2);
    CHECK_THROWS_AS(r.read_u8(), ProtocolError);
}

TEST_CASE("ByteReader rejects unterminated strings and trailing bytes", "[byte_reader]") {
    auto bytes = hex_decode("6162");
    ByteReader r(bytes, "Relation message");
    CHECK_THROWS_WITH(r.read_cstring(), Catch::Contains("unterminated string"));
    ByteReader r2(bytes, "Relation message");
    r2.read_u8();
    CHECK_THROWS_WITH(r2.expect_end(), Catch::Contains("trailing"));
}
