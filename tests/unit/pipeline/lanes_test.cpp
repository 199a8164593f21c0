#include "authsync/pipeline/lanes.hpp"

#include <catch2/catch.hpp>

#include <fmt/format.h>
#include "authsync/core/error.hpp"

using namespace authsync;
using namespace authsync::pipeline;

namespace {

std::string md5_hex(std::string_view s) {
    const auto d = md5(s);
    std::string out;
    for (auto b : d) out += fmt::format("{:02x}", b);
    return out;
}

}  // namespace

TEST_CASE("md5 gives RFC 1321's test vectors", "[pipeline]") {
    CHECK(md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e");
    CHECK(md5_hex("a") == "0cc175b9c0f1b6a831c399e269772661");
    CHECK(md5_hex("abc") == "900150983cd24fb0d6963f7d28e17f72");
    CHECK(md5_hex("message digest") == "f96b697d7cb7938d525a2f31aaf161d0");
    CHECK(md5_hex("abcdefghijklmnopqrstuvwxyz") == "c3fcd3d76192e4007dfb496cca67e13b");
    CHECK(md5_hex(
              "12345678901234567890123456789012345678901234567890123456789012345678901234567890") ==
          "57edf4a22be3c955ac49da2e2107b67a");
    // The padding's edge cases: a tail of 55, 56, 0 (64) bytes, and two blocks and more.
    CHECK(md5_hex(std::string(55, 'x')) == "04364420e25c512fd958a70738aa8f72");
    CHECK(md5_hex(std::string(56, 'x')) == "668a72d5ba17f08e62dabcafad6db14b");
    CHECK(md5_hex(std::string(64, 'x')) == "c1bb4f81d892b2d57947682aeb252456");
    CHECK(md5_hex(std::string(119, 'x')) == "ab347a5f68c8a443cfcddc633f12c24f");
    CHECK(md5_hex(std::string(120, 'x')) == "fb98667f98096de92620b64f46e1c5b5");
}

TEST_CASE("lanes spread keys and keep each key in one lane", "[pipeline]") {
    CHECK(lane_of("anything", 1) == 0);
    std::vector<int> counts(4);
    for (int i = 0; i < 4000; ++i) ++counts[lane_of("user-" + std::to_string(i), 4)];
    for (int c : counts) CHECK(c > 850);
    CHECK(lane_of("user-7", 4) == lane_of("user-7", 4));
    CHECK(lane_condition("id", 0, 1).empty());
    CHECK(lane_condition("id", 2, 4) == "('x' || left(md5(id), 8))::bit(32)::bigint % 4 = 2");
}

TEST_CASE("lanes start at their own checkpoints; another lane count needs them together",
          "[pipeline]") {
    const Lsn a(0x100), b(0x200);
    CHECK(lane_start_positions({}, 3) == std::vector<Lsn>(3));
    CHECK(lane_start_positions({{0, a}, {1, b}, {2, Lsn{}}}, 3) == std::vector<Lsn>{a, b, Lsn{}});
    // One lane's row before lanes existed, now four lanes: all start where it was.
    CHECK(lane_start_positions({{0, a}}, 4) == std::vector<Lsn>(4, a));
    // Four lanes stopped together, now two.
    CHECK(lane_start_positions({{0, b}, {1, b}, {2, b}, {3, b}}, 2) == std::vector<Lsn>(2, b));
    // Four lanes stopped apart (a crash), now two: users would move between lanes.
    CHECK_THROWS_AS(lane_start_positions({{0, b}, {1, a}, {2, b}, {3, b}}, 2), ConfigError);
    CHECK_THROWS_WITH(lane_start_positions({{0, b}, {1, a}}, 4),
                      Catch::Contains("set apply.lanes back to 2"));
}
