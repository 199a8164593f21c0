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
