#include "authsync/core/hex.hpp"

#include <fmt/format.h>

#include "authsync/core/error.hpp"

namespace authsync {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::vector<std::byte> hex_decode(std::string_view text) {
    std::size_t base = 0;
    if (text.size() >= 2 && text[0] == '\\' && text[1] == 'x') base = 2;
    auto digits = text.substr(base);
    if (digits.size() % 2 != 0) {
        throw ProtocolError(fmt::format("invalid hex: odd number of digits ({})", digits.size()));
    }
    std::vector<std::byte> out;
    out.reserve(digits.size() / 2);
    for (std::size_t i = 0; i < digits.size(); i += 2) {
        int hi = hex_value(digits[i]);
        int lo = hex_value(digits[i + 1]);
        if (hi < 0 || lo < 0) {
            std::size_t bad = base + i + (hi < 0 ? 0 : 1);
            throw ProtocolError(
                fmt::format("invalid hex: unexpected character at position {}", bad));
        }
        out.push_back(static_cast<std::byte>(hi * 16 + lo));
    }
    return out;
}

std::string hex_encode(std::span<const std::byte> bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (auto b : bytes) {
        auto v = std::to_integer<unsigned>(b);
        out.push_back(kDigits[v >> 4]);
        out.push_back(kDigits[v & 0xf]);
    }
    return out;
}

}  // namespace authsync
