// The `transport:` section: in-process (the default, as before it existed) or NATS JetStream,
// with located errors for what NATS cannot take.
#include <catch2/catch.hpp>

#include <string>

#include "authsync/config/config.hpp"
#include "authsync/core/error.hpp"

using namespace authsync;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

const config::EnvLookup kNoEnv = [](const std::string&) -> std::optional<std::string> {
    return std::nullopt;
};

const std::string kBase =
    "source: {dsn: \"host=a\"}\ntarget: {dsn: \"host=b\"}\n"
    "mappings:\n  - source: public.users\n    key: id\n    fields: {primary_email: email}\n";

config::Config parse(const std::string& transport) {
    return config::parse_config(kBase + transport, "t.yaml", kNoEnv);
}

std::string error_of(const std::string& transport) {
    try {
        parse(transport);
    } catch (const ConfigError& e) {
        return e.what();
    }
    FAIL("no ConfigError for:\n" << transport);
    return {};
}

}  // namespace

TEST_CASE("transport: absent or in_process keeps the engine in this process",
          "[config][transport]") {
    CHECK(parse("").transport.kind == config::TransportKind::InProcess);
    CHECK(parse("transport: {kind: in_process}\n").transport.kind ==
          config::TransportKind::InProcess);
    CHECK_THAT(error_of("transport: {kind: in_process, stream: X}\n"),
               Contains("transport.stream is for transport.kind: nats"));
    CHECK_THAT(error_of("transport: {kind: kafka}\n"), Contains("transport.kind"));
}

TEST_CASE("transport: nats with its defaults, and every setting read", "[config][transport]") {
    auto one = parse("transport: {kind: nats, servers: nats://127.0.0.1:4222}\n").transport;
    CHECK(one.nats());
    CHECK(one.servers == std::vector<std::string>{"nats://127.0.0.1:4222"});
    CHECK(one.stream == "AUTHSYNC");
    CHECK(one.subject_prefix == "authsync");
    CHECK(one.replicas == 1);  // one server: one replica
    CHECK(one.duplicate_window == std::chrono::seconds(120));
    CHECK(one.ack_wait == std::chrono::seconds(30));
    CHECK_FALSE(one.max_bytes);
    CHECK_FALSE(one.max_age);

    auto three = parse(
                     "transport:\n  kind: nats\n  servers: [nats://a:4222, nats://b:4222, "
                     "tls://c:4223]\n  stream: users_sync-1\n  subject_prefix: app.auth\n"
                     "  max_bytes: 1GB\n  max_age: 24h\n  duplicate_window: 5m\n"
                     "  ack_wait: 10s\n")
                     .transport;
    CHECK(three.servers.size() == 3);
    CHECK(three.replicas == 3);  // three servers: three replicas
    CHECK(three.stream == "users_sync-1");
    CHECK(three.subject_prefix == "app.auth");
    CHECK(three.max_bytes == std::int64_t{1} << 30);
    CHECK(three.max_age == std::chrono::hours(24));
    CHECK(three.duplicate_window == std::chrono::minutes(5));
    CHECK(three.ack_wait == std::chrono::seconds(10));
    CHECK(parse("transport: {kind: nats, servers: [nats://a:1, nats://b:2, nats://c:3], "
                "replicas: 1}\n")
              .transport.replicas == 1);
    // Copied into each target's config, as a sink takes it.
    CHECK(parse("transport: {kind: nats, servers: nats://a:1}\n").for_target(0).transport.nats());
}

TEST_CASE("transport: mistakes are located and say what is expected", "[config][transport]") {
    CHECK_THAT(error_of("transport: {kind: nats}\n"), Contains("needs transport.servers"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: []}\n"),
               Contains("transport.servers must not be"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: \"127.0.0.1:4222\"}\n"),
               Contains("has no scheme"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: \"http://a:4222\"}\n"),
               Contains("has another scheme"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: \"nats://a\"}\n"),
               Contains("has no port"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: \"nats://a:99999\"}\n"),
               Contains("invalid port"));
    // A credential in a URL would be logged with it; the message does not repeat it.
    const auto creds = error_of("transport: {kind: nats, servers: \"nats://u:s3cret@a:4222\"}\n");
    CHECK_THAT(creds, Contains("credentials do not belong"));
    CHECK_THAT(creds, !Contains("s3cret"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: nats://a:1, stream: \"a.b\"}\n"),
               Contains("transport.stream"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: nats://a:1, subject_prefix: \"a.*\"}\n"),
               Contains("transport.subject_prefix"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: nats://a:1, subject_prefix: \"a..b\"}\n"),
               Contains("transport.subject_prefix"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: nats://a:1, replicas: 7}\n"),
               Contains("transport.replicas must be 1 to 5"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: nats://a:1, replicas: 3}\n"),
               Contains("cannot exceed the servers listed"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: nats://a:1, max_age: 1m}\n"),
               Contains("must be at least transport.duplicate_window"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: nats://a:1, ack_wait: 10ms}\n"),
               Contains("transport.ack_wait must be at least 1s"));
    CHECK_THAT(error_of("transport: {kind: nats, servers: nats://a:1, colour: red}\n"),
               Contains("unknown key"));
    CHECK_THAT(error_of("transport: {kind: nats}\n"), StartsWith("t.yaml:"));
}
