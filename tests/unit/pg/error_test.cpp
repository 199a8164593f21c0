// Which server messages PgError shows, and which it keeps only for authsync.dead_letter.
#include <catch2/catch.hpp>

#include "authsync/pg/connection.hpp"

using namespace authsync;

TEST_CASE("the classes whose server messages may quote row values are withheld", "[pg]") {
    for (const char* s :
         {"22P02", "22001", "22003", "P0001", "P0004", "XX000", "38000", "39P01", "2F005"}) {
        INFO(s);
        CHECK(pg::withholds_server_message(s));
    }
    // These name objects (and put rows in DETAIL, which is never shown).
    for (const char* s : {"23505", "23514", "23502", "42P01", "57P01", "08006", "40001", ""}) {
        INFO(s);
        CHECK_FALSE(pg::withholds_server_message(s));
    }
    CHECK(pg::condition_name("22P02") == "invalid_text_representation");
    CHECK(pg::condition_name("P0001") == "raise_exception");
    CHECK(pg::condition_name("23505") == "unique_violation");
    CHECK(pg::condition_name("22ZZZ") == "data_exception");
    CHECK(pg::condition_name("ZZ123").empty());
}

TEST_CASE("an error authsync made keeps its message as the server message", "[pg]") {
    const auto made = pg::PgError::connection_loss("could not connect to host=h: refused");
    CHECK(made.server_message() == made.what());
    pg::PgError server("apply: invalid_text_representation (SQLSTATE 22P02)", "22P02", "", "",
                       "invalid input syntax for type bigint: \"v\" (SQLSTATE 22P02)");
    CHECK(std::string(server.what()).find("\"v\"") == std::string::npos);
    CHECK(server.server_message() ==
          "invalid input syntax for type bigint: \"v\" (SQLSTATE 22P02)");
}
