#include "authsync/core/pg_time.hpp"

#include <fmt/format.h>

namespace authsync {

namespace {

// Howard Hinnant's days-to-civil algorithm, for dates far outside time_t's comfort zone too.
struct Civil {
    std::int64_t year;
    unsigned month;
    unsigned day;
};

Civil civil_from_days(std::int64_t z) {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    return {y + (m <= 2), m, d};
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

}  // namespace

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
    const Civil c = civil_from_days(days);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", c.year, c.month, c.day,
                       sod / 3600, (sod / 60) % 60, sod % 60, frac);
}

}  // namespace authsync
