#include "authsync/core/calendar.hpp"

#include <chrono>

namespace authsync {

namespace {

namespace chr = std::chrono;

constexpr std::int64_t kYearsPerEra = 400;
constexpr std::int64_t kDaysPerEra = 146'097;

// The year's place within its 400-year era, which <chrono> can hold: [0, 400).
chr::year year_in_era(std::int64_t year) {
    return chr::year{static_cast<int>(year - floor_div(year, kYearsPerEra) * kYearsPerEra)};
}

}  // namespace

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

CivilDate civil_from_days(std::int64_t days) {
    const std::int64_t era = floor_div(days, kDaysPerEra);
    const chr::year_month_day ymd{chr::sys_days{chr::days{days - era * kDaysPerEra}}};
    return {static_cast<int>(ymd.year()) + era * kYearsPerEra, static_cast<unsigned>(ymd.month()),
            static_cast<unsigned>(ymd.day())};
}

std::int64_t days_from_civil(const CivilDate& date) {
    const std::int64_t era = floor_div(date.year, kYearsPerEra);
    const chr::sys_days in_era{
        chr::year_month_day{year_in_era(date.year), chr::month{date.month}, chr::day{date.day}}};
    return era * kDaysPerEra + in_era.time_since_epoch().count();
}

unsigned days_in_month(std::int64_t year, unsigned month) {
    const chr::year_month_day_last last{year_in_era(year), chr::month_day_last{chr::month{month}}};
    return static_cast<unsigned>(last.day());
}

}  // namespace authsync
