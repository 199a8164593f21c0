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

// What a WAL insert position says about the records before it. pg_current_wal_insert_lsn()
// right after a record that ended exactly on a page boundary points past the next page's
// header (24 bytes, 40 at a segment start), where no record can end; that record, and all
// before it, are durable once the flush position reaches the boundary. So an insert position
// within a page header is taken back to the page's start; any other is returned as it is.
constexpr Lsn durable_point(Lsn insert_position, std::uint64_t wal_block_size) {
    constexpr std::uint64_t kLongPageHeader = 40;  // SizeOfXLogLongPHD
    const auto in_page = insert_position.value % wal_block_size;
    return in_page <= kLongPageHeader ? Lsn(insert_position.value - in_page) : insert_position;
}

}  // namespace authsync
