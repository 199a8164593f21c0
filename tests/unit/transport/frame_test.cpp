// Frames (transport/frame.hpp) around pgoutput messages captured from PostgreSQL 15.
#include "authsync/transport/frame.hpp"

#include <catch2/catch.hpp>

#include "authsync/core/error.hpp"
#include "authsync/pgoutput/decoder.hpp"
#include "fixtures.hpp"

using namespace authsync;
using transport::decode_frame;
using transport::encode_frame;
using transport::Frame;

namespace {

std::string text_of(const test::Bytes& b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// The captured transaction (Begin, Relation, Insert x n, Commit) as one frame.
Frame captured_frame() {
    Frame f;
    for (const auto& bytes : test::load_hex_fixture("pgoutput/insert.hex")) {
        f.messages.push_back(text_of(bytes));
    }
    pgoutput::Decoder decoder{pgoutput::DecoderOptions{}};
    const auto commit = decoder.decode(test::load_hex_fixture("pgoutput/insert.hex").back());
    f.end_lsn = std::get<pgoutput::Commit>(commit).end_lsn;
    f.prev_end_lsn = Lsn(f.end_lsn.value - 0x1000);
    return f;
}

}  // namespace

TEST_CASE("A frame carries a captured transaction's pgoutput messages byte for byte",
          "[unit][frame]") {
    auto f = captured_frame();
    f.epoch = 77;
    REQUIRE(f.messages.size() >= 4);
    const auto decoded = decode_frame(encode_frame(f));
    CHECK(decoded.end_lsn == f.end_lsn);
    CHECK(decoded.prev_end_lsn == f.prev_end_lsn);
    CHECK(decoded.part == 0);
    CHECK(decoded.parts == 1);
    CHECK(decoded.epoch == 77);
    REQUIRE(decoded.messages == f.messages);
    // The sink decodes them with the engine's own decoder.
    pgoutput::Decoder decoder{pgoutput::DecoderOptions{}};
    std::vector<std::string> names;
    for (const auto& m : decoded.messages) {
        names.emplace_back(
            pgoutput::message_name(decoder.decode(std::as_bytes(std::span(m.data(), m.size())))));
    }
    CHECK(names.front() == "Begin");
    CHECK(names.back() == "Commit");
}

TEST_CASE("A malformed frame is refused with a clear error, never read past its end",
          "[unit][frame]") {
    auto f = captured_frame();
    const auto good = encode_frame(f);
    // Every truncation.
    for (std::size_t n = 0; n < good.size(); ++n) {
        CHECK_THROWS_AS(decode_frame(std::string_view(good).substr(0, n)), ProtocolError);
    }
    CHECK_THROWS_AS(decode_frame(good + "x"), ProtocolError);  // trailing bytes
    auto bad = good;
    bad[3] = '\x01';  // the first layout, before epochs  // a version this build does not read
    CHECK_THROWS_WITH(decode_frame(bad), Catch::Contains("not an authsync frame"));
    // A count of messages that cannot fit: refused before anything is allocated for it.
    bad = good;
    for (int i = 36; i < 40; ++i) bad[i] = '\xff';
    CHECK_THROWS_WITH(decode_frame(bad), Catch::Contains("cannot fit"));
    // An empty message, a prev_end_lsn not before end_lsn, a part out of its parts.
    Frame g = f;
    g.messages.back().clear();
    CHECK_THROWS_WITH(decode_frame(encode_frame(g)), Catch::Contains("is empty"));
    g = f;
    g.prev_end_lsn = g.end_lsn;
    CHECK_THROWS_WITH(decode_frame(encode_frame(g)), Catch::Contains("is not before end_lsn"));
    g = f;
    g.end_lsn = Lsn{};
    g.prev_end_lsn = Lsn{};
    CHECK_THROWS_WITH(decode_frame(encode_frame(g)), Catch::Contains("end_lsn is 0"));
    bad = good;
    bad[23] = '\x05';  // part 5 of 1
    CHECK_THROWS_WITH(decode_frame(bad), Catch::Contains("part 5 of 1"));
    g = f;
    g.part = 2;
    g.parts = 2;
    CHECK_THROWS_AS(encode_frame(g), std::invalid_argument);
}

TEST_CASE("Frame subjects and message ids", "[unit][frame]") {
    auto f = captured_frame();
    f.part = 1;
    f.parts = 3;
    f.epoch = 0xabc;
    CHECK(transport::frame_subject("authsync", "slot1", "tenant7") == "authsync.slot1.tenant7");
    CHECK(transport::frame_subject("acme.authsync", "s", "t") == "acme.authsync.s.t");
    for (auto [prefix, slot, target] : {std::tuple{"", "s", "t"},
                                        {"a", "s.x", "t"},
                                        {"a", "s", "t*"},
                                        {"a", "s", ">"},
                                        {"a b", "s", "t"},
                                        {".a", "s", "t"},
                                        {"a..b", "s", "t"},
                                        {"a", "", "t"}}) {
        CHECK_THROWS_AS(transport::frame_subject(prefix, slot, target), ConfigError);
    }
    CHECK(transport::frame_message_id("slot1", "tenant7", f) ==
          "slot1/tenant7/" + f.end_lsn.to_string() + "/1/abc");
}
