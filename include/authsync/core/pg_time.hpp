// PostgreSQL wire timestamps: signed microseconds since 2000-01-01 00:00:00 UTC.
//
// Conversions to and from Unix time and ISO-8601 UTC text. Pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace authsync {

// Seconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
inline constexpr std::int64_t kPgEpochOffsetSeconds = 946'684'800;

struct PgTimestamp {
    std::int64_t micros = 0;  // since 2000-01-01 UTC

    constexpr auto operator<=>(const PgTimestamp&) const = default;

    constexpr std::int64_t unix_micros() const {
        return micros + kPgEpochOffsetSeconds * 1'000'000;
    }
    static constexpr PgTimestamp from_unix_micros(std::int64_t unix_us) {
        return PgTimestamp{unix_us - kPgEpochOffsetSeconds * 1'000'000};
    }
    static PgTimestamp now();
    // `2024-05-01T12:00:00.123456Z`
    std::string to_iso8601() const;
    // Reads back exactly what to_iso8601 writes (years 0000 to 9999); nullopt on anything else.
    static std::optional<PgTimestamp> parse_iso8601(std::string_view text);
};

}  // namespace authsync
