// CopyData framing of the streaming replication protocol, on frames captured from a real
// walsender (tests/fixtures/stream/insert_stream.hex).
#include <catch2/catch.hpp>

#include "authsync/core/error.hpp"
#include "authsync/core/hex.hpp"
#include "authsync/pgoutput/decoder.hpp"
#include "authsync/wire/replication_message.hpp"
#include "fixtures.hpp"

using namespace authsync;
using namespace authsync::wire;

TEST_CASE("captured XLogData frames carry pgoutput messages and LSNs", "[wire]") {
    auto frames = test::load_hex_fixture("stream/insert_stream.hex");
    REQUIRE(frames.size() >= 5);
    pgoutput::Decoder decoder;
    std::size_t xlog = 0, keepalives = 0, reply_requested = 0;
    Lsn last_start;
    for (const auto& f : frames) {
        auto msg = decode_server_message(f);
        if (auto* x = std::get_if<XLogData>(&msg)) {
            ++xlog;
            // A Relation message is written with no WAL position of its own: start is 0/0.
            // Positions that are set never go backwards.
            if (x->start.is_valid()) {
                CHECK(x->start >= last_start);
                last_start = x->start;
            } else {
                CHECK(std::to_integer<char>(x->payload[0]) == 'R');
            }
            CHECK(x->send_time.unix_micros() > 1700000000LL * 1000000);
            CHECK_NOTHROW(decoder.decode(x->payload));
        } else {
            const auto& k = std::get<PrimaryKeepalive>(msg);
            ++keepalives;
            CHECK(k.wal_end.is_valid());
            if (k.reply_requested) ++reply_requested;
        }
    }
    CHECK(xlog == 5);  // Begin, Relation, Insert, Insert, Commit
    CHECK(last_start.is_valid());
    CHECK(keepalives >= 2);
    CHECK(reply_requested >= 1);
    CHECK(reply_requested < keepalives);
}

TEST_CASE("every truncated prefix of a captured frame is rejected", "[wire][truncation]") {
    for (const auto& f : test::load_hex_fixture("stream/insert_stream.hex")) {
        auto type = std::to_integer<char>(f[0]);
        // An XLogData frame is valid with any non-empty payload, so its prefixes are only
        // rejected down to the 25-byte header plus one payload byte.
        std::size_t min_valid = type == 'w' ? 26 : f.size();
        for (std::size_t len = 0; len < min_valid; ++len) {
            INFO("type " << type << " prefix " << len);
            CHECK_THROWS_AS(decode_server_message(std::span(f.data(), len)), ProtocolError);
        }
    }
}

TEST_CASE("keepalive fields are validated", "[wire]") {
    auto frames = test::load_hex_fixture("stream/insert_stream.hex");
    std::vector<std::byte> keepalive;
    for (const auto& f : frames) {
        if (std::to_integer<char>(f[0]) == 'k') keepalive = f;
    }
    REQUIRE(keepalive.size() == 18);
    auto bad = keepalive;
    bad[17] = std::byte{2};
    CHECK_THROWS_WITH(decode_server_message(bad), Catch::Contains("reply requested"));
    bad = keepalive;
    bad.push_back(std::byte{0});
    CHECK_THROWS_WITH(decode_server_message(bad), Catch::Contains("trailing"));
    CHECK_THROWS_WITH(decode_server_message(hex_decode("7a")),
                      Catch::Contains("unknown replication message type 0x7a"));
}

TEST_CASE("standby status updates encode as PostgreSQL expects", "[wire]") {
    StandbyStatusUpdate u{Lsn{0x16B3748}, Lsn{0x16B3700}, Lsn{0x16B3700},
                          PgTimestamp{0x0102030405060708}, true};
    auto bytes = encode_standby_status_update(u);
    CHECK(hex_encode(bytes) ==
          "72"
          "00000000016b3748"
          "00000000016b3700"
          "00000000016b3700"
          "0102030405060708"
          "01");
    CHECK(decode_standby_status_update(bytes) == u);
    auto longer = std::vector<std::byte>(bytes.begin(), bytes.end());
    longer.push_back(std::byte{0});
    CHECK_THROWS_AS(decode_standby_status_update(longer), ProtocolError);
    CHECK_THROWS_AS(decode_standby_status_update(std::span(bytes.data(), 33)), ProtocolError);
}
