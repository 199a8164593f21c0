// What each failure means for authsync (pg::classify): by SQLSTATE class, by exception type, and
// for libpq's own errors, which carry no SQLSTATE. The two connection tests ask libpq to reach a
// socket that does not exist: no server is involved.
#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange
// (This comment ends the include block, so that clang-format does not sort Asio above it.)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <catch2/catch.hpp>
#include <optional>

#include "authsync/core/error.hpp"
#include "authsync/pg/async_connection.hpp"
#include "authsync/pg/connection.hpp"
#include "authsync/pg/error_class.hpp"

using namespace authsync;
using pg::ErrorClass;

namespace {

// A Unix-domain socket directory that does not exist: libpq fails at once, CONNECTION_BAD.
constexpr const char* kNowhere = "host=/nonexistent/authsync-test port=5432 dbname=x user=x";

boost::asio::awaitable<void> connect_nowhere() {
    pg::AsyncConnection conn(co_await boost::asio::this_coro::executor);
    co_await conn.connect(kNowhere, "authsync-test");
}

}  // namespace

TEST_CASE("connection, resource, lock and shutdown errors are transient", "[errors]") {
    for (const char* s :
         {"08000", "08003", "08006", "08001", "08P01", "40001", "40P01", "53000", "53100", "53200",
          "53300", "53400", "55006", "55P03", "57014", "57P01", "57P02", "57P03"}) {
        INFO(s);
        CHECK(pg::classify_sqlstate(s) == ErrorClass::Transient);
    }
}

TEST_CASE("constraint violations, data exceptions and RAISE EXCEPTION are one change's fault",
          "[errors]") {
    for (const char* s : {"23000", "23502", "23503", "23505", "23514", "23P01", "22000", "22001",
                          "22003", "22021", "22P02", "22P05", "P0001"}) {
        INFO(s);
        CHECK(pg::classify_sqlstate(s) == ErrorClass::Row);
    }
}

TEST_CASE("every other SQLSTATE is permanent, and so is none", "[errors]") {
    // Neighbours of the transient and row states are not swept in with them.
    for (const char* s :
         {"42P01", "42501", "42703", "XX000", "XX001", "55000", "55P02", "57000", "57P04", "57P05",
          "25P03", "3B001", "40000", "40002", "P0000", "P0002", "P0004", "2F005", "0A000", ""}) {
        INFO(s);
        CHECK(pg::classify_sqlstate(s) == ErrorClass::Permanent);
    }
    // Not SQLSTATEs at all: a class prefix alone, or too long.
    CHECK(pg::classify_sqlstate("08") == ErrorClass::Permanent);
    CHECK(pg::classify_sqlstate("23") == ErrorClass::Permanent);
    CHECK(pg::classify_sqlstate("0800000") == ErrorClass::Permanent);
}

TEST_CASE("a PgError is classed by the SQLSTATE it carries", "[errors]") {
    CHECK(pg::classify(pg::PgError("terminating connection", "57P01")) == ErrorClass::Transient);
    CHECK(pg::classify(pg::PgError("unique_violation", "23505")) == ErrorClass::Row);
    CHECK(pg::classify(pg::PgError("relation does not exist", "42P01")) == ErrorClass::Permanent);
}

TEST_CASE("an error without a SQLSTATE is permanent unless libpq lost the connection", "[errors]") {
    const pg::PgError internal("the target did not report its WAL position");
    CHECK_FALSE(internal.is_connection_loss());
    CHECK(pg::classify(internal) == ErrorClass::Permanent);

    const auto lost = pg::PgError::connection_loss("server closed the connection unexpectedly");
    CHECK(lost.is_connection_loss());
    CHECK(lost.sqlstate().empty());
    CHECK(pg::classify(lost) == ErrorClass::Transient);
    // Kept through a copy, as when a failed result is held until libpq has no more.
    std::optional<pg::PgError> held;
    held = lost;
    CHECK(pg::classify(*held) == ErrorClass::Transient);
}

TEST_CASE("a connection libpq cannot make is a transient connection loss", "[errors]") {
    try {
        pg::Connection::connect(kNowhere);
        FAIL("connected to a socket that does not exist");
    } catch (const pg::PgError& e) {
        CHECK(e.is_connection_loss());
        CHECK(e.sqlstate().empty());  // none invented
        CHECK(pg::classify(e) == ErrorClass::Transient);
    }

    boost::asio::io_context io;
    std::exception_ptr failure;
    boost::asio::co_spawn(io, connect_nowhere(), [&](std::exception_ptr e) { failure = e; });
    io.run();
    REQUIRE(failure);
    try {
        std::rethrow_exception(failure);
    } catch (const pg::PgError& e) {
        CHECK(e.is_connection_loss());
        CHECK(e.sqlstate().empty());
        CHECK(pg::classify(e) == ErrorClass::Transient);
    }
}

TEST_CASE("authsync's own exceptions are classed by their type", "[errors]") {
    CHECK(pg::classify(SlotBusyError("slot authsync is active in another process")) ==
          ErrorClass::Transient);
    CHECK(pg::classify(ProtocolError("Commit message outside a transaction")) ==
          ErrorClass::Protocol);
    CHECK(pg::classify(ConfigError("status.listen has no port")) == ErrorClass::Permanent);
    CHECK(pg::classify(MappingError("mapping users: no key columns")) == ErrorClass::Permanent);
    CHECK(pg::classify(Error("a lost slot")) == ErrorClass::Permanent);
    CHECK(pg::classify(std::runtime_error("anything else")) == ErrorClass::Permanent);
    // What the event loop's wait on a connection's socket throws when the peer is gone.
    CHECK(pg::classify(boost::system::system_error(boost::system::errc::make_error_code(
              boost::system::errc::connection_reset))) == ErrorClass::Transient);
}
