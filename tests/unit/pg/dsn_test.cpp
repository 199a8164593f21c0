// What authsync shows of a DSN, and how it keeps the DSN's password out of libpq's messages.
// libpq parses here (PQconninfoParse), no server is involved.
#include <catch2/catch.hpp>

#include "authsync/core/error.hpp"
#include "authsync/pg/connection.hpp"

using namespace authsync;
using Catch::Contains;

namespace {

// None of the words of `password` appear in `text`.
void check_no_words_of(const std::string& text, const std::string& password) {
    INFO(text);
    std::size_t start = 0;
    while (start < password.size()) {
        auto end = password.find(' ', start);
        if (end == std::string::npos) end = password.size();
        auto word = password.substr(start, end - start);
        if (!word.empty()) CHECK_THAT(text, !Contains(word));
        start = end + 1;
    }
}

}  // namespace

TEST_CASE("redact_dsn masks the password of a keyword/value dsn and keeps the rest", "[pg]") {
    auto shown = pg::redact_dsn(
        "host=db.internal port=5433 dbname=auth user=sync password=s3cr3t "
        "sslmode=verify-full");
    CHECK(shown ==
          "host=db.internal port=5433 dbname=auth user=sync password=*** sslmode=verify-full");
}

TEST_CASE("redact_dsn masks a quoted password with spaces", "[pg]") {
    auto shown = pg::redact_dsn("host=h user=u password='correct horse battery'");
    CHECK(shown == "host=h user=u password=***");
    check_no_words_of(shown, "correct horse battery");
}

TEST_CASE("redact_dsn shows no part of a dsn libpq cannot parse", "[pg]") {
    // Unquoted spaces: libpq says `missing "=" after "horse"`.
    for (const char* dsn :
         {"host=h user=u password=correct horse battery", "host=h password='correct horse battery",
          "postgresql://u:abc%zz@h/db"}) {
        auto shown = pg::redact_dsn(dsn);
        INFO(dsn);
        CHECK_THAT(shown, Contains("invalid connection string"));
        check_no_words_of(shown, "correct horse battery");
        CHECK_THAT(shown, !Contains("abc"));
        CHECK_THAT(shown, !Contains("host"));
    }
}

TEST_CASE("redact_dsn masks a URI's password, also one with an unencoded space", "[pg]") {
    CHECK(pg::redact_dsn("postgresql://sync:s3cr3t@db:5433/auth?sslmode=require") ==
          "host=db port=5433 dbname=auth user=sync password=*** sslmode=require");
    auto shown = pg::redact_dsn("postgresql://u:Hunter2 secret@h/db");
    CHECK(shown == "host=h dbname=db user=u password=***");
    check_no_words_of(shown, "Hunter2 secret");
    CHECK(pg::redact_dsn("postgres://u@h/db?password=p%40ss") ==
          "host=h dbname=db user=u password=***");
}

TEST_CASE("redact_dsn shows nothing of a URI whose password holds an unencoded @", "[pg]") {
    // libpq takes `p` as the password and `ss@h` as the host: half the password would show.
    auto shown = pg::redact_dsn("postgresql://u:p@ss@h/db");
    CHECK_THAT(shown, Contains("invalid connection string"));
    CHECK_THAT(shown, !Contains("ss@h"));
    CHECK_THROWS_AS(pg::validate_dsn("postgresql://u:p@ss@h/db", "source.dsn"), ConfigError);
}

TEST_CASE("redact_dsn quotes values with spaces and shows a bare database name as dbname", "[pg]") {
    CHECK(pg::redact_dsn("host=h options='-c search_path=a'") ==
          "host=h options='-c search_path=a'");
    CHECK(pg::redact_dsn("auth") == "dbname=auth");
    CHECK(pg::redact_dsn("") == "");
}

TEST_CASE("redact_dsn masks the password wherever else the dsn repeats it", "[pg]") {
    CHECK(pg::redact_dsn("host=h user=Zq9wPass dbname=Zq9wPass password=Zq9wPass") ==
          "host=h dbname=*** user=*** password=***");
}

TEST_CASE("validate_dsn names the setting and never echoes the dsn or libpq's parse error",
          "[pg]") {
    for (const char* dsn :
         {"host=h user=u password=correct horse battery", "postgresql://u:abc%zz@h/db"}) {
        INFO(dsn);
        try {
            pg::validate_dsn(dsn, "source.dsn");
            FAIL("accepted");
        } catch (const ConfigError& e) {
            std::string what = e.what();
            CHECK_THAT(what, Contains("source.dsn"));
            CHECK_THAT(what, Contains("invalid connection string"));
            check_no_words_of(what, "correct horse battery");
            CHECK_THAT(what, !Contains("abc"));
            CHECK_THAT(what, !Contains("missing"));
        }
    }
    CHECK_NOTHROW(pg::validate_dsn("host=h password='correct horse battery'", "source.dsn"));
    CHECK_NOTHROW(pg::validate_dsn("postgresql://u:Hunter2%20secret@h/db", "target.dsn"));
    CHECK_NOTHROW(pg::validate_dsn("auth", "target.dsn"));
}

TEST_CASE("dsn_password finds the password of either dsn form", "[pg]") {
    CHECK(pg::dsn_password("host=h password='correct horse battery'") == "correct horse battery");
    CHECK(pg::dsn_password("postgresql://u:p%40ss@h/db") == "p@ss");
    CHECK(pg::dsn_password("host=h") == std::nullopt);
    CHECK(pg::dsn_password("host=h password=a b") == std::nullopt);  // does not parse
}

TEST_CASE("scrub_password removes the password, raw and percent-encoded, from a message", "[pg]") {
    CHECK(pg::scrub_password("role \"correct horse battery\" does not exist",
                             "correct horse battery") == "role \"***\" does not exist");
    CHECK(pg::scrub_password("bad token \"Hunter2%20secret\" and Hunter2 secret",
                             "Hunter2 secret") == "bad token \"***\" and ***");
    CHECK(pg::scrub_password("x p%40ss y p%40SS", "p@ss") == "x *** y p%40SS");
    CHECK(pg::scrub_password("host=%7e%7E!", "~~") == "host=***!");
    CHECK(pg::scrub_password("a 100%25 b", "100%") == "a *** b");
    CHECK(pg::scrub_password("nothing to hide", "") == "nothing to hide");
}

TEST_CASE("dsn_database names the database in either DSN form, without the password", "[pg]") {
    const auto a = pg::dsn_database("host=h port=5433 dbname=app user=u password=secret");
    REQUIRE(a);
    CHECK(*a == "host=h port=5433 dbname=app");
    // The same database as a URI, with other options around it.
    CHECK(pg::dsn_database("postgresql://other:pw@h:5433/app?sslmode=require") == a);
    CHECK(pg::dsn_database("host=h port=5433 dbname=app2") != a);
    CHECK(pg::dsn_database("host=h port=5434 dbname=app") != a);
    // dbname defaults to the user, as libpq's does; a bare word is a database name.
    CHECK(*pg::dsn_database("host=h user=app") == "host=h port=5432 dbname=app");
    CHECK(*pg::dsn_database("app") == "host= port=5432 dbname=app");
}

TEST_CASE("dsn_database takes the default port and the loopback names as one server", "[pg]") {
    CHECK(pg::dsn_database("host=h dbname=app") == pg::dsn_database("host=h port=5432 dbname=app"));
    CHECK(pg::dsn_database("postgresql://localhost/app") ==
          pg::dsn_database("host=127.0.0.1 port=5432 dbname=app"));
    CHECK(pg::dsn_database("host=::1 port=5433 dbname=app") ==
          pg::dsn_database("postgresql://localhost:5433/app"));
    CHECK(pg::dsn_database("host=localhost port=5433 dbname=app") !=
          pg::dsn_database("host=localhost port=5432 dbname=app"));
    CHECK_FALSE(pg::dsn_database("host='unterminated"));
}
