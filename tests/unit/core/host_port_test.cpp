// One reading of host:port for status.listen, the endpoint and `authsync status --url`.
#include "authsync/core/host_port.hpp"

#include <catch2/catch.hpp>

using namespace authsync;

TEST_CASE("a name or IPv4 address and its port split at the last colon", "[host_port]") {
    auto hp = split_host_port("127.0.0.1:8080");
    CHECK(hp.problem.empty());
    CHECK(hp.host == "127.0.0.1");
    REQUIRE(hp.port);
    CHECK(*hp.port == "8080");
    hp = split_host_port("localhost:");
    CHECK(hp.host == "localhost");
    REQUIRE(hp.port);
    CHECK(hp.port->empty());  // present but empty: the caller says it is not a port
    hp = split_host_port(":8080");
    CHECK(hp.problem.empty());
    CHECK(hp.host.empty());
}

TEST_CASE("an IPv6 address goes in brackets, which the host loses", "[host_port]") {
    auto hp = split_host_port("[::1]:9090");
    CHECK(hp.problem.empty());
    CHECK(hp.host == "::1");
    REQUIRE(hp.port);
    CHECK(*hp.port == "9090");
    CHECK(split_host_port("::1:8080").problem == "needs brackets around an IPv6 address");
    CHECK(split_host_port("[::1:8080").problem == "has no closing \"]\"");
}

TEST_CASE("without a colon after the host there is no port", "[host_port]") {
    for (const char* text : {"localhost", "[::1]", "[::1]8080", ""}) {
        INFO(text);
        const auto hp = split_host_port(text);
        CHECK(hp.problem.empty());
        CHECK_FALSE(hp.port);
    }
    CHECK(split_host_port("localhost").host == "localhost");
    CHECK(split_host_port("[::1]").host == "::1");
}
