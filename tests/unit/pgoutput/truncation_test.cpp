// Every strict prefix of every captured message must be rejected with ProtocolError: the wire
// format always says how long a message is, so a short buffer can never decode to something.
#include <catch2/catch.hpp>

#include "authsync/core/error.hpp"
#include "authsync/pgoutput/decoder.hpp"
#include "fixture_options.hpp"
#include "fixtures.hpp"

using namespace authsync;

TEST_CASE("every truncated prefix of every fixture raises ProtocolError",
          "[pgoutput][truncation]") {
    auto files = test::list_hex_fixtures("pgoutput");
    REQUIRE(files.size() >= 10);
    std::size_t prefixes_checked = 0;
    for (const auto& file : files) {
        INFO(file);
        pgoutput::Decoder decoder(test::options_for_fixture(file));
        auto messages = test::load_hex_fixture(file);
        REQUIRE_FALSE(messages.empty());
        for (std::size_t m = 0; m < messages.size(); ++m) {
            const auto& bytes = messages[m];
            INFO("message " << m);
            // Long messages (the streamed transaction's wide rows): every prefix of the first
            // 64 bytes and of the last 64, plus every 7th in between, keeps the run short.
            for (std::size_t len = 0; len < bytes.size(); ++len) {
                if (len > 64 && len + 64 < bytes.size() && len % 7 != 0) continue;
                pgoutput::Decoder copy = decoder;
                INFO("prefix length " << len);
                CHECK_THROWS_AS(copy.decode(std::span(bytes.data(), len)), ProtocolError);
                ++prefixes_checked;
            }
            REQUIRE_NOTHROW(decoder.decode(bytes));
        }
    }
    CHECK(prefixes_checked > 1000);
}

TEST_CASE("every fixture message with a trailing byte raises ProtocolError",
          "[pgoutput][truncation]") {
    for (const auto& file : test::list_hex_fixtures("pgoutput")) {
        INFO(file);
        pgoutput::Decoder decoder(test::options_for_fixture(file));
        for (auto bytes : test::load_hex_fixture(file)) {
            pgoutput::Decoder copy = decoder;
            auto longer = bytes;
            longer.push_back(std::byte{0});
            CHECK_THROWS_WITH(copy.decode(longer), Catch::Contains("trailing"));
            decoder.decode(bytes);
        }
    }
}
