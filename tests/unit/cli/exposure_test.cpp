#include "authsync/cli/exposure.hpp"

#include <catch2/catch.hpp>
#include <map>

using namespace authsync;
using Catch::Matchers::Contains;

namespace {

config::EnvLookup env_of(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

config::Config config_with(const std::string& source_dsn,
                           const std::string& listen = "127.0.0.1:8080") {
    config::Config c;
    c.source.dsn = source_dsn;
    c.target.dsn = "host=/var/run/postgresql dbname=app";
    c.targets.push_back({.name = "default", .target = c.target});
    c.status.listen = listen;
    return c;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
}

}  // namespace

TEST_CASE("local hosts are sockets, localhost, 127/8 and ::1", "[cli][exposure]") {
    for (const char* h : {"", "/var/run/postgresql", "@abstract", "localhost", "127.0.0.1",
                          "127.3.2.1", "::1", "[::1]", "0:0:0:0:0:0:0:1"}) {
        INFO(h);
        CHECK(cli::is_local_host(h));
    }
    for (const char* h :
         {"0.0.0.0", "::", "10.0.0.5", "db.internal", "128.0.0.1", "localhost.evil", "[::2]"}) {
        INFO(h);
        CHECK_FALSE(cli::is_local_host(h));
    }
}

TEST_CASE("a remote database without sslmode=verify-full is a warning", "[cli][exposure]") {
    const auto none = env_of({});
    CHECK(
        cli::exposure_warnings(config_with("host=db.internal sslmode=verify-full"), none).empty());
    CHECK(cli::exposure_warnings(config_with("host=127.0.0.1 sslmode=disable"), none).empty());
    CHECK(cli::exposure_warnings(config_with("dbname=auth"), none).empty());  // the Unix socket
    for (const char* mode : {"disable", "allow", "prefer", "require", "verify-ca"}) {
        auto w = cli::exposure_warnings(
            config_with(std::string("host=db.internal password=pw sslmode=") + mode), none);
        REQUIRE(w.size() == 1);
        CHECK_THAT(w[0], Contains("source.dsn: host db.internal") &&
                             Contains(std::string("sslmode=") + mode) && !Contains("pw"));
    }
    // libpq's default is prefer; URIs, host lists, hostaddr and PG* variables count too.
    CHECK_THAT(joined(cli::exposure_warnings(config_with("host=db.internal"), none)),
               Contains("sslmode=prefer"));
    CHECK_THAT(
        joined(cli::exposure_warnings(
            config_with("postgresql://u:secret@db.internal:5432/auth?sslmode=require"), none)),
        Contains("host db.internal") && !Contains("secret"));
    CHECK_THAT(joined(cli::exposure_warnings(config_with("host=localhost,db2.internal"), none)),
               Contains("host db2.internal"));
    CHECK_THAT(joined(cli::exposure_warnings(config_with("hostaddr=10.0.0.5"), none)),
               Contains("host 10.0.0.5"));
    CHECK_THAT(joined(cli::exposure_warnings(config_with("dbname=auth"),
                                             env_of({{"PGHOST", "db.internal"}}))),
               Contains("host db.internal"));
    CHECK(cli::exposure_warnings(config_with("host=db.internal"),
                                 env_of({{"PGSSLMODE", "verify-full"}}))
              .empty());
}

TEST_CASE("a status endpoint beyond loopback without token or tls is a warning",
          "[cli][exposure]") {
    const auto none = env_of({});
    const auto local = "host=/tmp";
    CHECK(cli::exposure_warnings(config_with(local, "127.0.0.1:8080"), none).empty());
    CHECK(cli::exposure_warnings(config_with(local, "[::1]:8080"), none).empty());
    CHECK(cli::exposure_warnings(config_with(local, ""), none).empty());
    auto open = joined(cli::exposure_warnings(config_with(local, "0.0.0.0:8080"), none));
    CHECK_THAT(open, Contains("status.listen 0.0.0.0:8080") && Contains("no status.token") &&
                         Contains("no status.tls"));
    auto c = config_with(local, "[::]:8080");
    c.status.token = "sentinel-token";
    auto token_only = joined(cli::exposure_warnings(c, none));
    CHECK_THAT(token_only, !Contains("no status.token") && Contains("no status.tls") &&
                               !Contains("sentinel-token"));
    c.status.tls = config::StatusTlsConfig{"/c.pem", "/k.pem"};
    CHECK(cli::exposure_warnings(c, none).empty());
}
