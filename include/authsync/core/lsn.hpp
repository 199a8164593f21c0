// Lsn: a WAL position (XLogRecPtr), formatted as PostgreSQL does: two hex halves, `X/X`.
//
// LSNs travel through authsync as this type, never as strings; parse at the edge, format at the
// edge. Pure: no I/O, no allocation beyond the formatted string.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace authsync {

struct Lsn {
    std::uint64_t value = 0;

    constexpr Lsn() = default;
    constexpr explicit Lsn(std::uint64_t v) : value(v) {}

    // Parses `X/X` (each half 1 to 8 hex digits, either case). Returns nullopt on anything else.
    static std::optional<Lsn> parse(std::string_view text);
    // Like parse, but throws ProtocolError naming the text.
    static Lsn parse_or_throw(std::string_view text);

    std::string to_string() const;

    constexpr bool is_valid() const { return value != 0; }
    constexpr auto operator<=>(const Lsn&) const = default;
};

// Bytes of WAL from `from` to `to`; 0 when `to` is not ahead of `from`.
constexpr std::uint64_t lsn_bytes_between(Lsn from, Lsn to) {
    return to.value > from.value ? to.value - from.value : 0;
}

}  // namespace authsync
