// Gregorian dates over PostgreSQL's whole range, beyond what std::chrono::year holds.
#include "authsync/core/calendar.hpp"

#include <catch2/catch.hpp>

using namespace authsync;

namespace {

bool same(const CivilDate& a, const CivilDate& b) {
    return a.year == b.year && a.month == b.month && a.day == b.day;
}

}  // namespace

TEST_CASE("days count from 1970-01-01 in both directions", "[calendar]") {
    CHECK(same(civil_from_days(0), {1970, 1, 1}));
    CHECK(same(civil_from_days(-1), {1969, 12, 31}));
    CHECK(same(civil_from_days(10'957), {2000, 1, 1}));
    CHECK(same(civil_from_days(19'782), {2024, 2, 29}));
    CHECK(days_from_civil({2024, 2, 29}) == 19'782);
    CHECK(days_from_civil({1970, 1, 1}) == 0);
}

TEST_CASE("dates outside std::chrono::year's range convert too", "[calendar]") {
    // PostgreSQL's first date, 4714-11-24 BC (astronomical -4713), is Julian day 0, and its
    // last, 5874897-12-31, is Julian day 2147483493; 1970-01-01 is Julian day 2440588.
    CHECK(same(civil_from_days(-2'440'588), {-4713, 11, 24}));
    CHECK(days_from_civil({-4713, 11, 24}) == -2'440'588);
    CHECK(same(civil_from_days(2'147'483'493 - 2'440'588), {5'874'897, 12, 31}));
    CHECK(days_from_civil({5'874'897, 12, 31}) == 2'147'483'493 - 2'440'588);
    CHECK(same(civil_from_days(days_from_civil({294'276, 12, 31})), {294'276, 12, 31}));
}

TEST_CASE("every day of eras around year zero and 1970 round-trips, one after another",
          "[calendar]") {
    for (const std::int64_t start : {-800'000LL, -146'097LL * 2 - 3, 146'097LL * 300}) {
        CivilDate previous = civil_from_days(start - 1);
        for (std::int64_t d = start; d < start + 146'097 * 2 + 7; ++d) {
            const CivilDate c = civil_from_days(d);
            INFO(d);
            REQUIRE(days_from_civil(c) == d);
            // The next day of the previous date, by the calendar's own rules.
            const bool new_month = previous.day == days_in_month(previous.year, previous.month);
            const bool new_year = new_month && previous.month == 12;
            REQUIRE(c.year == previous.year + (new_year ? 1 : 0));
            REQUIRE(c.month == (new_year ? 1 : new_month ? previous.month + 1 : previous.month));
            REQUIRE(c.day == (new_month ? 1 : previous.day + 1));
            previous = c;
        }
    }
}

TEST_CASE("February has 29 days in leap years, 1 BC and 401 BC among them", "[calendar]") {
    CHECK(days_in_month(2024, 2) == 29);
    CHECK(days_in_month(2023, 2) == 28);
    CHECK(days_in_month(1900, 2) == 28);
    CHECK(days_in_month(2000, 2) == 29);
    CHECK(days_in_month(0, 2) == 29);
    CHECK(days_in_month(-100, 2) == 28);
    CHECK(days_in_month(-400, 2) == 29);
    CHECK(days_in_month(294'276, 2) == 29);
    CHECK(days_in_month(2023, 4) == 30);
    CHECK(days_in_month(2023, 12) == 31);
}

TEST_CASE("floor_div rounds toward negative infinity", "[calendar]") {
    CHECK(floor_div(7, 2) == 3);
    CHECK(floor_div(-7, 2) == -4);
    CHECK(floor_div(-8, 2) == -4);
    CHECK(floor_div(0, 5) == 0);
}
