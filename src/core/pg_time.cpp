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
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", c.year, c.month, c.day,
                       sod / 3600, (sod / 60) % 60, sod % 60, frac);
}

}  // namespace authsync
