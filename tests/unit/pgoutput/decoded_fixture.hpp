// Decodes a whole captured fixture with the options it was produced with.
#pragma once

#include <string>
#include <vector>

#include "authsync/pgoutput/decoder.hpp"
#include "fixture_options.hpp"
#include "fixtures.hpp"

namespace authsync::test {

inline std::vector<pgoutput::Message> decode_fixture(const std::string& name) {
    auto path = "pgoutput/" + name + ".hex";
    pgoutput::Decoder decoder(options_for_fixture(path));
    std::vector<pgoutput::Message> out;
    for (const auto& bytes : load_hex_fixture(path)) out.push_back(decoder.decode(bytes));
    return out;
}

inline std::vector<std::string> message_names(const std::vector<pgoutput::Message>& messages) {
    std::vector<std::string> out;
    for (const auto& m : messages) out.emplace_back(pgoutput::message_name(m));
    return out;
}

// Message `n` (1-based, as in tests/fixtures/pgoutput/README.md) of a decoded fixture, as T.
template <typename T>
const T& line(const std::vector<pgoutput::Message>& messages, std::size_t n) {
    return std::get<T>(messages.at(n - 1));
}

}  // namespace authsync::test
