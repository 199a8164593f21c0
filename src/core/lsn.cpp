#include "authsync/core/lsn.hpp"

#include <charconv>

#include "authsync/core/error.hpp"

namespace authsync {

namespace {

std::optional<std::uint32_t> parse_hex_half(std::string_view s) {
    if (s.empty() || s.size() > 8) return std::nullopt;
    std::uint32_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
    if (ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

std::optional<Lsn> Lsn::parse(std::string_view text) {
    auto slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto hi = parse_hex_half(text.substr(0, slash));
    auto lo = parse_hex_half(text.substr(slash + 1));
    if (!hi || !lo) return std::nullopt;
    return Lsn{(static_cast<std::uint64_t>(*hi) << 32) | *lo};
}

Lsn Lsn::parse_or_throw(std::string_view text) {
    auto lsn = parse(text);
    if (!lsn) throw ProtocolError("invalid LSN \"" + std::string(text) + "\"");
    return *lsn;
}

std::string Lsn::to_string() const {
    char buf[20];
    auto hi = static_cast<std::uint32_t>(value >> 32);
    auto lo = static_cast<std::uint32_t>(value);
    char* p = std::to_chars(buf, buf + sizeof buf, hi, 16).ptr;
    *p++ = '/';
    p = std::to_chars(p, buf + sizeof buf, lo, 16).ptr;
    std::string out(buf, p);
    for (auto& c : out) {
        if (c >= 'a' && c <= 'f') c = static_cast<char>(c - 'a' + 'A');
    }
    return out;
}

}  // namespace authsync
