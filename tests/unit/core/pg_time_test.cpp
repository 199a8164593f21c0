#include <catch2/catch.hpp>

#include "authsync/core/pg_time.hpp"

using authsync::PgTimestamp;

TEST_CASE("PostgreSQL timestamps count microseconds from 2000-01-01 UTC", "[pg_time]") {
    CHECK(PgTimestamp{0}.to_iso8601() == "2000-01-01T00:00:00.000000Z");
    CHECK(PgTimestamp{0}.unix_micros() == 946684800LL * 1000000);
    CHECK(PgTimestamp{-1}.to_iso8601() == "1999-12-31T23:59:59.999999Z");
    // 2024-02-29T12:34:56.789012Z is unix 1709210096.789012
    auto t = PgTimestamp::from_unix_micros(1709210096789012LL);
    CHECK(t.to_iso8601() == "2024-02-29T12:34:56.789012Z");
    CHECK(PgTimestamp::from_unix_micros(0).to_iso8601() == "1970-01-01T00:00:00.000000Z");
}

TEST_CASE("now is after the time this test was written", "[pg_time]") {
    CHECK(PgTimestamp::now().unix_micros() > 1700000000LL * 1000000);
}

TEST_CASE("an ISO-8601 timestamp as authsync writes it reads back to the same microsecond",
          "[pg_time]") {
    for (const std::int64_t unix_us :
         {0LL, 1709210096789012LL, 1714564799999999LL, -1LL, 253402300799999999LL}) {
        INFO(unix_us);
        const auto t = PgTimestamp::from_unix_micros(unix_us);
        CHECK(PgTimestamp::parse_iso8601(t.to_iso8601()) == t);
    }
    CHECK(PgTimestamp::parse_iso8601("2000-01-01T00:00:00.000000Z") == PgTimestamp{0});
}

TEST_CASE("a timestamp in any other shape, or a date that does not exist, does not read",
          "[pg_time]") {
    for (const char* text :
         {"", "2024-02-29T12:34:56Z", "2024-02-29 12:34:56.789012Z", "2024-02-29T12:34:56.789012",
          "2024-02-29T12:34:56.789012+00:00", "2023-02-29T12:34:56.789012Z",
          "2024-13-01T00:00:00.000000Z", "2024-01-01T24:00:00.000000Z",
          "2024-01-01T00:60:00.000000Z", "2024-01-01T00:00:60.000000Z",
          "2024-01-0aT00:00:00.000000Z", "-024-01-01T00:00:00.000000Z"}) {
        INFO(text);
        CHECK_FALSE(PgTimestamp::parse_iso8601(text));
    }
}
