#include "authsync/core/pg_time.hpp"

#include <fmt/format.h>

#include "authsync/core/calendar.hpp"

namespace authsync {

PgTimestamp PgTimestamp::now() {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    return from_unix_micros(us);
}

std::string PgTimestamp::to_iso8601() const {
    const std::int64_t us = unix_micros();
    const std::int64_t secs = floor_div(us, 1'000'000);
    const std::int64_t frac = us - secs * 1'000'000;
    const std::int64_t days = floor_div(secs, 86400);
    const std::int64_t sod = secs - days * 86400;
    const CivilDate c = civil_from_days(days);
    if (c.year >= 0 && c.year <= 9999) {
        // The usual shape, written digit by digit: this runs for every change applied.
        std::string out = "0000-00-00T00:00:00.000000Z";
        const auto put = [&out](std::size_t at, std::size_t width, std::int64_t value) {
            for (std::size_t i = at + width; i > at; --i, value /= 10) {
                out[i - 1] = static_cast<char>('0' + value % 10);
            }
        };
        put(0, 4, c.year);
        put(5, 2, c.month);
        put(8, 2, c.day);
        put(11, 2, sod / 3600);
        put(14, 2, (sod / 60) % 60);
        put(17, 2, sod % 60);
        put(20, 6, frac);
        return out;
    }
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", c.year, c.month, c.day,
                       sod / 3600, (sod / 60) % 60, sod % 60, frac);
}

std::optional<PgTimestamp> PgTimestamp::parse_iso8601(std::string_view text) {
    // YYYY-MM-DDTHH:MM:SS.ffffffZ: fixed widths, so each part is read at its offset.
    constexpr std::string_view kShape = "0000-00-00T00:00:00.000000Z";
    if (text.size() != kShape.size()) return std::nullopt;
    for (std::size_t i = 0; i < kShape.size(); ++i) {
        const bool digit = text[i] >= '0' && text[i] <= '9';
        if (kShape[i] == '0' ? !digit : text[i] != kShape[i]) return std::nullopt;
    }
    const auto number = [&](std::size_t at, std::size_t width) {
        std::int64_t n = 0;
        for (std::size_t i = at; i < at + width; ++i) n = n * 10 + (text[i] - '0');
        return n;
    };
    using namespace std::chrono;
    const year_month_day date{year{static_cast<int>(number(0, 4))},
                              month{static_cast<unsigned>(number(5, 2))},
                              day{static_cast<unsigned>(number(8, 2))}};
    const std::int64_t hour = number(11, 2);
    const std::int64_t minute = number(14, 2);
    const std::int64_t second = number(17, 2);
    if (!date.ok() || hour > 23 || minute > 59 || second > 59) return std::nullopt;
    const std::int64_t days = sys_days(date).time_since_epoch().count();
    const std::int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second;
    return from_unix_micros(seconds * 1'000'000 + number(20, 6));
}

}  // namespace authsync
