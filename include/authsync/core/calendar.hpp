// Dates in the proleptic Gregorian calendar, with astronomical years (1 BC is year 0).
//
// Over the whole range PostgreSQL stores (dates to 5874897 AD, timestamps to 294276 AD), which
// is wider than std::chrono::year's ±32767: the calendar repeats every 400 years (146097
// days), so whole 400-year eras are set aside, <chrono> converts within one, and the eras are
// added back. Pure; parsing and formatting stay with their callers.
#pragma once

#include <cstdint>

namespace authsync {

struct CivilDate {
    std::int64_t year;  // astronomical: 1 BC is 0, 2 BC is -1
    unsigned month;     // 1-12
    unsigned day;       // 1-31
};

// a / b rounded toward negative infinity; b > 0.
std::int64_t floor_div(std::int64_t a, std::int64_t b);

// The date `days` days after 1970-01-01 (before it when negative).
CivilDate civil_from_days(std::int64_t days);

// Days from 1970-01-01 to `date`, which must be a valid date (days_in_month).
std::int64_t days_from_civil(const CivilDate& date);

// 28 to 31.
unsigned days_in_month(std::int64_t year, unsigned month);

}  // namespace authsync
