#include "authsync/pipeline/lanes.hpp"

#include <fmt/format.h>

#include <bit>
#include <cstring>
#include <stdexcept>

#include "authsync/core/error.hpp"

namespace authsync::pipeline {

namespace {

// Per-round shift amounts and the sine-derived constants of RFC 1321.
constexpr std::array<std::uint32_t, 64> kShift = {
    7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 5,  9,  14, 20, 5,  9,
    14, 20, 5,  9,  14, 20, 5,  9,  14, 20, 4,  11, 16, 23, 4,  11, 16, 23, 4,  11, 16, 23,
    4,  11, 16, 23, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21};
constexpr std::array<std::uint32_t, 64> kSine = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

void md5_block(std::array<std::uint32_t, 4>& state, const std::uint8_t* block) {
    std::uint32_t m[16];
    for (int i = 0; i < 16; ++i) {
        m[i] = static_cast<std::uint32_t>(block[i * 4]) |
               static_cast<std::uint32_t>(block[i * 4 + 1]) << 8 |
               static_cast<std::uint32_t>(block[i * 4 + 2]) << 16 |
               static_cast<std::uint32_t>(block[i * 4 + 3]) << 24;
    }
    auto [a, b, c, d] = state;
    for (std::uint32_t i = 0; i < 64; ++i) {
        std::uint32_t f;
        std::uint32_t g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) % 16;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) % 16;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) % 16;
        }
        const std::uint32_t next = d;
        d = c;
        c = b;
        b = b + std::rotl(a + f + kSine[i] + m[g], static_cast<int>(kShift[i]));
        a = next;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
}

}  // namespace

std::array<std::uint8_t, 16> md5(std::string_view data) {
    std::array<std::uint32_t, 4> state = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(data.data());
    std::size_t whole = data.size() / 64 * 64;
    for (std::size_t i = 0; i < whole; i += 64) md5_block(state, bytes + i);
    // The tail, a 0x80 byte, zeros, and the length in bits (little-endian): one or two blocks.
    std::uint8_t tail[128] = {};
    const std::size_t rest = data.size() - whole;
    if (rest > 0) std::memcpy(tail, bytes + whole, rest);
    tail[rest] = 0x80;
    const std::size_t tail_size = rest < 56 ? 64 : 128;
    const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
    for (int i = 0; i < 8; ++i)
        tail[tail_size - 8 + i] = static_cast<std::uint8_t>(bits >> (8 * i));
    for (std::size_t i = 0; i < tail_size; i += 64) md5_block(state, tail + i);
    std::array<std::uint8_t, 16> digest{};
    for (int i = 0; i < 16; ++i)
        digest[i] = static_cast<std::uint8_t>(state[i / 4] >> (8 * (i % 4)));
    return digest;
}

std::size_t lane_of(std::string_view key, std::size_t lanes) {
    if (lanes == 0) throw std::invalid_argument("lane_of needs at least one lane");
    if (lanes == 1) return 0;
    const auto d = md5(key);
    const std::uint32_t first = static_cast<std::uint32_t>(d[0]) << 24 |
                                static_cast<std::uint32_t>(d[1]) << 16 |
                                static_cast<std::uint32_t>(d[2]) << 8 | d[3];
    return first % lanes;
}

std::string lane_condition(std::string_view key_sql, std::size_t lane, std::size_t lanes) {
    if (lanes <= 1) return {};
    // The first 8 hex digits of md5() as an unsigned 32-bit number.
    return fmt::format("('x' || left(md5({}), 8))::bit(32)::bigint % {} = {}", key_sql, lanes,
                       lane);
}

std::vector<Lsn> lane_start_positions(const std::map<std::size_t, Lsn>& stored, std::size_t lanes) {
    std::vector<Lsn> positions(lanes);
    if (stored.empty()) return positions;
    bool same_lanes = stored.size() == lanes;
    for (const auto& [lane, lsn] : stored) same_lanes = same_lanes && lane < lanes;
    if (same_lanes) {
        for (const auto& [lane, lsn] : stored) positions[lane] = lsn;
        return positions;
    }
    const Lsn first = stored.begin()->second;
    Lsn lowest = first;
    Lsn highest = first;
    for (const auto& [lane, lsn] : stored) {
        lowest = std::min(lowest, lsn);
        highest = std::max(highest, lsn);
    }
    if (lowest != highest || !stored.contains(0)) {
        throw ConfigError(fmt::format(
            "apply.lanes is {}, but the target holds checkpoints of {} lanes at different "
            "positions ({} to {}): the lanes stopped without finishing together, and with "
            "another lane count users would move between lanes; set apply.lanes back to {} and "
            "stop authsync with SIGTERM (every lane then stops at one position), or run "
            "`authsync resync`",
            lanes, stored.rbegin()->first + 1, lowest.to_string(), highest.to_string(),
            stored.rbegin()->first + 1));
    }
    for (auto& p : positions) p = first;
    return positions;
}

}  // namespace authsync::pipeline
