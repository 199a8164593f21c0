#include "authsync/config/config.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "authsync/core/error.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using config::Config;
using config::EnvLookup;
using mapping::Conversion;

namespace {

EnvLookup fake_env(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

const EnvLookup kNoEnv = fake_env({});

Config parse(const std::string& yaml, const EnvLookup& env = kNoEnv) {
    return config::parse_config(yaml, "t.yaml", env);
}

// The ConfigError message parsing `yaml` raises; fails the test when there is none.
std::string error_of(const std::string& yaml, const EnvLookup& env = kNoEnv) {
    try {
        config::parse_config(yaml, "t.yaml", env);
    } catch (const ConfigError& e) {
        return e.what();
    }
    FAIL("no ConfigError for:\n" << yaml);
    return {};
}

// Asserts the error's position (1-based "line:col") and a distinctive part of its message,
// and that the message is one line.
void check_error(const std::string& yaml, const std::string& position, const std::string& part,
                 const EnvLookup& env = kNoEnv) {
    auto message = error_of(yaml, env);
    INFO(message);
    CHECK_THAT(message, StartsWith("t.yaml:" + position + ": "));
    CHECK_THAT(message, Contains(part));
    CHECK(message.find('\n') == std::string::npos);
}

// Most malformed configs below are this one with one thing changed.
const std::string kTail = R"(target: {dsn: "host=b"}
mappings:
  - source: users
    key: id
    fields: {name: name}
)";

std::string conf_dir() {
    return AUTHSYNC_CONF_DIR;
}

}  // namespace

// --- valid configs ---------------------------------------------------------------------------

TEST_CASE("the documented example config parses into the values written", "[config]") {
    auto c = parse(R"(source:
  dsn: "host=127.0.0.1 port=5432 dbname=auth user=replicator password=${AUTH_PW}"
  slot: authsync_1
  publication: auth_pub
  create_slot: false
  create_publication: true
  status_interval: 5s
  heartbeat_interval: 0
target:
  dsn: "host=127.0.0.1 port=5433 dbname=app user=app"
status:
  listen: "[::1]:9090"
apply:
  batch_max_rows: 500
  batch_max_bytes: 4MB
  batch_max_delay: 1s
  on_error: dead_letter
  synchronous_commit: true
reconnect:
  initial_backoff: 250ms
  max_backoff: 2m
mappings:
  - source: public.users
    target: neon_auth.users_sync
    key: id
    fields:
      id: id
      display_name: name
      primary_email: email
      signed_up_at_millis: {column: created_at, as: epoch_millis}
      server_metadata: metadata
    on_delete: hard
)",
                   fake_env({{"AUTH_PW", "s3cret"}}));
    CHECK(c.path == "t.yaml");
    CHECK(c.source.dsn == "host=127.0.0.1 port=5432 dbname=auth user=replicator password=s3cret");
    CHECK(c.source.slot == "authsync_1");
    CHECK(c.source.publication == "auth_pub");
    CHECK_FALSE(c.source.create_slot);
    CHECK(c.source.create_publication);
    CHECK(c.source.status_interval == 5s);
    CHECK(c.source.heartbeat_interval == 0ms);
    CHECK(c.target.dsn == "host=127.0.0.1 port=5433 dbname=app user=app");
    CHECK(c.status.listen == "[::1]:9090");
    CHECK(c.apply.batch_max_rows == 500);
    CHECK(c.apply.batch_max_bytes == 4u << 20);
    CHECK(c.apply.batch_max_delay == 1s);
    CHECK(c.apply.on_error == config::OnError::DeadLetter);
    CHECK(c.apply.synchronous_commit);
    CHECK(c.reconnect.initial_backoff == 250ms);
    CHECK(c.reconnect.max_backoff == 2min);
    REQUIRE(c.mappings.size() == 1);
    const auto& m = c.mappings[0];
    CHECK(m.source_schema == "public");
    CHECK(m.source_table == "users");
    CHECK(m.target_schema == "neon_auth");
    CHECK(m.target_table == "users_sync");
    CHECK(m.key_columns == std::vector<std::string>{"id"});
    REQUIRE(m.fields.size() == 5);
    CHECK(m.fields[3].json_key == "signed_up_at_millis");
    CHECK(m.fields[3].column == "created_at");
    CHECK(m.fields[3].as == Conversion::EpochMillis);
    CHECK(m.fields[4].as == Conversion::Auto);
    CHECK(m.on_delete == mapping::OnDelete::Hard);
}

TEST_CASE("a minimal config gets every default", "[config]") {
    auto c = parse("source: {dsn: \"host=a\"}\n" + kTail);
    config::SourceConfig source;
    config::ApplyConfig apply;
    config::ReconnectConfig reconnect;
    CHECK(c.source.dsn == "host=a");
    CHECK(c.source.slot == "authsync");
    CHECK(c.source.publication == "authsync");
    CHECK(c.source.create_slot);
    CHECK(c.source.create_publication);
    CHECK(c.source.status_interval == 10s);
    CHECK(c.source.heartbeat_interval == 10s);
    CHECK(c.status.listen == "127.0.0.1:8080");
    CHECK(c.apply.batch_max_rows == 10'000);
    CHECK(c.apply.batch_max_bytes == 16u << 20);
    CHECK(c.apply.batch_max_delay == 200ms);
    CHECK(c.apply.on_error == config::OnError::Stop);
    CHECK_FALSE(c.apply.synchronous_commit);
    CHECK(c.reconnect.initial_backoff == 500ms);
    CHECK(c.reconnect.max_backoff == 30s);
    const auto& m = c.mappings.at(0);
    CHECK(m.source_name() == "public.users");
    CHECK(m.target_name() == "neon_auth.users_sync");
    CHECK(m.on_delete == mapping::OnDelete::Soft);
}

TEST_CASE("optional sections left empty take their defaults", "[config]") {
    auto c = parse("source: {dsn: x}\nstatus:\napply:\nreconnect:\n" + kTail);
    CHECK(c.status.listen == "127.0.0.1:8080");
    CHECK(c.apply.batch_max_rows == 10'000);
    CHECK(c.reconnect.max_backoff == 30s);
}

TEST_CASE("durations take ms, s, m and h, and a bare 0", "[config]") {
    const std::pair<const char*, std::chrono::milliseconds> cases[] = {
        {"500ms", 500ms}, {"10s", 10s}, {"2m", 2min}, {"1h", 1h},   {"0", 0ms},
        {"0s", 0ms},      {"0ms", 0ms}, {"1ms", 1ms}, {"90s", 90s},
    };
    for (const auto& [text, expected] : cases) {
        INFO(text);
        auto c = parse(std::string("source: {dsn: x, heartbeat_interval: ") + text + "}\n" + kTail);
        CHECK(c.source.heartbeat_interval == expected);
    }
}

TEST_CASE("sizes take B, kB, KB, MB and GB as powers of 1024, and bare bytes", "[config]") {
    const std::pair<const char*, std::size_t> cases[] = {
        {"1", 1},
        {"1024", 1024},
        {"512B", 512},
        {"4kB", 4096},
        {"4KB", 4096},
        {"16MB", 16u << 20},
        {"1GB", std::size_t{1} << 30},
    };
    for (const auto& [text, expected] : cases) {
        INFO(text);
        auto c = parse(std::string("source: {dsn: x}\napply: {batch_max_bytes: ") + text + "}\n" +
                       kTail);
        CHECK(c.apply.batch_max_bytes == expected);
    }
}

TEST_CASE("booleans accept the YAML 1.2 spellings of true and false", "[config]") {
    auto c = parse("source: {dsn: x, create_slot: FALSE, create_publication: False}\n" + kTail);
    CHECK_FALSE(c.source.create_slot);
    CHECK_FALSE(c.source.create_publication);
    c = parse("source: {dsn: x, create_slot: True, create_publication: TRUE}\n" + kTail);
    CHECK(c.source.create_slot);
    CHECK(c.source.create_publication);
}

TEST_CASE("${VAR} expands in string values from the given environment", "[config]") {
    auto env = fake_env({{"PW", "pa$$word"}, {"SLOT", "slot_7"}, {"DELAY", "3s"}, {"_X1", "x"}});
    auto c = parse(R"(source:
  dsn: "user=u password=${PW} options=${_X1}${_X1}"
  slot: ${SLOT}
  status_interval: ${DELAY}
)" + kTail,
                   env);
    // The variable's value is taken as it is: "$$" in it is not expanded again.
    CHECK(c.source.dsn == "user=u password=pa$$word options=xx");
    CHECK(c.source.slot == "slot_7");
    CHECK(c.source.status_interval == 3s);
}

TEST_CASE("$$ is a literal dollar and a lone dollar is kept", "[config]") {
    auto c = parse("source: {dsn: \"password=a$$b$c$ x=$${NOT_A_VAR}\"}\n" + kTail);
    CHECK(c.source.dsn == "password=a$b$c$ x=${NOT_A_VAR}");
}

TEST_CASE("keys are never expanded", "[config]") {
    auto c = parse(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields: {"${NAME}": name}
)",
                   fake_env({{"NAME", "expanded"}}));
    CHECK(c.mappings.at(0).fields.at(0).json_key == "${NAME}");
}

TEST_CASE("fields keep the order they are written in", "[config]") {
    auto c = parse(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields:
      zeta: z
      alpha: a
      mid: {column: m, as: text}
      beta: b
      id: id
)");
    std::vector<std::string> keys;
    for (const auto& f : c.mappings.at(0).fields) keys.push_back(f.json_key);
    CHECK(keys == std::vector<std::string>{"zeta", "alpha", "mid", "beta", "id"});
    CHECK(c.mappings[0].fields[2].as == Conversion::Text);
}

TEST_CASE("quoted identifiers keep capitals, dots and doubled quotes", "[config]") {
    auto c = parse(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: '"Auth"."ProjectUser"'
    target: '"my.schema"."a""b"'
    key: [tenantId, id]
    fields: {email: primaryEmail}
  - source: '"Users"'
    target: app_users
    key: id
    fields: {email: email}
  - source: auth.users
    key: id
    fields: {email: email}
)");
    REQUIRE(c.mappings.size() == 3);
    CHECK(c.mappings[0].source_schema == "Auth");
    CHECK(c.mappings[0].source_table == "ProjectUser");
    CHECK(c.mappings[0].target_schema == "my.schema");
    CHECK(c.mappings[0].target_table == "a\"b");
    CHECK(c.mappings[0].key_columns == std::vector<std::string>{"tenantId", "id"});
    CHECK(c.mappings[1].source_schema == "public");
    CHECK(c.mappings[1].source_table == "Users");
    CHECK(c.mappings[1].target_schema == "public");
    CHECK(c.mappings[1].target_table == "app_users");
    CHECK(c.mappings[2].source_name() == "auth.users");
}

TEST_CASE("the same table in different schemas is two mappings, not a duplicate", "[config]") {
    auto c = parse(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - {source: a.users, key: id, fields: {e: e}}
  - {source: b.users, key: id, fields: {e: e}}
)");
    CHECK(c.mappings.size() == 2);
}

TEST_CASE("an empty listen address disables the status endpoint", "[config]") {
    CHECK(parse("source: {dsn: x}\nstatus: {listen: \"\"}\n" + kTail).status.listen.empty());
    CHECK(parse("source: {dsn: x}\nstatus: {listen: \"localhost:1\"}\n" + kTail).status.listen ==
          "localhost:1");
}

TEST_CASE("status.max_connections caps the endpoint's connections, 64 by default", "[config]") {
    CHECK(parse("source: {dsn: x}\n" + kTail).status.max_connections == 64);
    CHECK(
        parse("source: {dsn: x}\nstatus: {max_connections: 8}\n" + kTail).status.max_connections ==
        8);
    check_error("source: {dsn: x}\nstatus:\n  max_connections: 0\n" + kTail, "3:20",
                "status.max_connections must be a positive integer, not \"0\"");
    check_error("source: {dsn: x}\nstatus:\n  max_connections: many\n" + kTail, "3:20",
                "status.max_connections must be a positive integer");
}

TEST_CASE("status.tls names a certificate and a key, both required", "[config]") {
    CHECK_FALSE(parse("source: {dsn: x}\n" + kTail).status.tls);
    auto c =
        parse("source: {dsn: x}\nstatus:\n  tls: {certificate: /c.pem, key: \"${K}\"}\n" + kTail,
              [](const std::string& n) -> std::optional<std::string> {
                  return n == "K" ? std::optional<std::string>("/k.pem") : std::nullopt;
              });
    REQUIRE(c.status.tls);
    CHECK(c.status.tls->certificate == "/c.pem");
    CHECK(c.status.tls->key == "/k.pem");
    check_error("source: {dsn: x}\nstatus:\n  tls: {certificate: /c.pem}\n" + kTail, "3:3",
                "missing required key \"key\" in status.tls");
    check_error("source: {dsn: x}\nstatus:\n  tls: on\n" + kTail, "3:8",
                "status.tls must be a mapping with certificate and key");
    check_error(
        "source: {dsn: x}\nstatus:\n  tls: {certificate: /c.pem, key: /k.pem, ca: x}\n" + kTail,
        "3:43", "unknown key \"ca\" in status.tls");
}

TEST_CASE("a field named id may map the single key column", "[config]") {
    auto c = parse(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: [user_id]
    fields: {id: {column: user_id, as: text}}
)");
    CHECK(c.mappings.at(0).fields.at(0).as == Conversion::Text);
}

// --- malformed configs -------------------------------------------------------------------------

TEST_CASE("a YAML syntax error is a ConfigError at its mark", "[config]") {
    check_error("source: {dsn: x}\nmappings: [a, b\n", "3:1", "end of sequence flow not found");
    check_error("source:\n  dsn: x\n    slot: y\n", "3:9", "illegal map value");
}

TEST_CASE("a YAML syntax error does not quote the document", "[config]") {
    // yaml-cpp's own message would be "unknown escape character: q".
    check_error("source:\n  dsn: \"password=hunter\\q2\"\n" + kTail, "2:26",
                "unknown escape character");
    CHECK_THAT(error_of("source:\n  dsn: \"password=hunter\\q2\"\n" + kTail),
               Catch::Matchers::EndsWith("unknown escape character"));
}

TEST_CASE("an empty file is rejected", "[config]") {
    check_error("", "1:1", "the config is empty");
    check_error("# only a comment\n", "1:1", "the config is empty");
}

TEST_CASE("a top level that is not a mapping is rejected", "[config]") {
    check_error("- source\n- target\n", "1:1", "the top level must be a mapping, not a list");
}

TEST_CASE("empty YAML documents are ignored", "[config]") {
    auto c = parse("---\n# nothing\n---\nsource: {dsn: x}\n" + kTail + "---\n");
    CHECK(c.source.dsn == "x");
}

TEST_CASE("a second YAML document is rejected", "[config]") {
    check_error("source: {dsn: x}\n" + kTail + "---\nsource: {dsn: y}\n", "8:1",
                "expected one YAML document, found 2");
}

TEST_CASE("an unknown top-level key suggests the close one", "[config]") {
    check_error("sorce: {dsn: x}\n" + kTail, "1:1",
                "unknown top-level key \"sorce\" (did you mean \"source\"?)");
}

TEST_CASE("an unknown key in source suggests dsn for dns", "[config]") {
    check_error("source:\n  dsn: x\n  dns: y\n" + kTail, "3:3",
                "unknown key \"dns\" in source (did you mean \"dsn\"?)");
}

TEST_CASE("an unknown key with nothing close gets no suggestion", "[config]") {
    auto yaml = "source: {dsn: x}\napply:\n  colour: blue\n" + kTail;
    check_error(yaml, "3:3", "unknown key \"colour\" in apply");
    CHECK_THAT(error_of(yaml), !Contains("did you mean"));
}

TEST_CASE("a missing source section is reported at the top level", "[config]") {
    check_error(kTail, "1:1", "missing required key \"source\" at the top level");
}

TEST_CASE("a missing target section is reported at the top level", "[config]") {
    check_error("source: {dsn: x}\nmappings: [{source: u, key: id, fields: {a: b}}]\n", "1:1",
                "missing required key \"target\"");
}

TEST_CASE("a source without a dsn points at the source key", "[config]") {
    check_error("# comment\nsource:\n  slot: s\n" + kTail, "2:1",
                "missing required key \"dsn\" in source");
}

TEST_CASE("an empty dsn is rejected", "[config]") {
    check_error("source:\n  dsn: \"\"\n" + kTail, "2:8", "source.dsn must not be empty");
    check_error(
        "source: {dsn: x}\ntarget: {dsn: ''}\nmappings: [{source: u, key: id, fields: {a: b}}]\n",
        "2:15", "target.dsn must not be empty");
}

TEST_CASE("a dsn that is a mapping is a type error", "[config]") {
    check_error("source:\n  dsn: {host: a}\n" + kTail, "2:8",
                "source.dsn must be a string, not a mapping");
}

TEST_CASE("a key with no value is reported at the key", "[config]") {
    check_error("source:\n  dsn: x\n  slot:\n" + kTail, "3:3",
                "source.slot must be a string, not nothing");
}

TEST_CASE("a section that is a string is a type error", "[config]") {
    check_error("source: {dsn: x}\nstatus: on\n" + kTail, "2:9",
                "status must be a mapping, not a string");
}

TEST_CASE("a duplicate key in source is reported at the second", "[config]") {
    check_error("source:\n  dsn: x\n  slot: a\n  dsn: y\n" + kTail, "4:3",
                "duplicate key \"dsn\" in source (first at line 2)");
}

TEST_CASE("a key that is not a string is rejected", "[config]") {
    check_error("source:\n  dsn: x\n  [a, b]: c\n" + kTail, "3:3",
                "keys in source must be strings, not a list");
}

TEST_CASE("a slot name outside [a-z0-9_] is rejected", "[config]") {
    check_error("source: {dsn: x, slot: Auth-Sync}\n" + kTail, "1:24",
                "source.slot \"Auth-Sync\" is not a valid replication slot name");
}

TEST_CASE("a slot name of 64 characters is rejected", "[config]") {
    check_error("source:\n  dsn: x\n  slot: " + std::string(64, 's') + "\n" + kTail, "3:9",
                "is not a valid replication slot name (1-63 characters");
}

TEST_CASE("a publication name longer than 63 bytes is rejected", "[config]") {
    check_error("source:\n  dsn: x\n  publication: " + std::string(64, 'p') + "\n" + kTail, "3:16",
                "is 64 bytes long (at most 63)");
}

TEST_CASE("a publication name with a NUL byte is rejected", "[config]") {
    check_error("source:\n  dsn: x\n  publication: \"a\\0b\"\n" + kTail, "3:16",
                "identifier \"a\\x00b\" contains a NUL byte");
}

TEST_CASE("yes is not a boolean", "[config]") {
    check_error("source:\n  dsn: x\n  create_slot: yes\n" + kTail, "3:16",
                "source.create_slot must be true or false, not \"yes\" (YAML 1.2 booleans only)");
}

TEST_CASE("a duration without a unit is rejected", "[config]") {
    check_error("source:\n  dsn: x\n  status_interval: 10\n" + kTail, "3:20",
                "source.status_interval \"10\" is not a valid duration: it has no unit");
}

TEST_CASE("a duration with an unknown unit is rejected", "[config]") {
    check_error("source: {dsn: x}\napply: {batch_max_delay: 10sec}\n" + kTail, "2:26",
                "unknown unit \"sec\" (expected an integer with a unit ms, s, m or h");
}

TEST_CASE("a negative duration is rejected", "[config]") {
    check_error("source: {dsn: x, heartbeat_interval: -1s}\n" + kTail, "1:38",
                "\"-1s\" is not a valid duration: it does not start with a digit");
}

TEST_CASE("a duration too large for milliseconds is rejected", "[config]") {
    check_error("source: {dsn: x, heartbeat_interval: 99999999999999999h}\n" + kTail, "1:38",
                "is not a valid duration: it is too large");
}

TEST_CASE("a zero status interval is rejected", "[config]") {
    check_error("source:\n  dsn: x\n  status_interval: 0s\n" + kTail, "3:20",
                "source.status_interval must be greater than 0");
}

TEST_CASE("a size with a lower-case unit is rejected", "[config]") {
    check_error(
        "source: {dsn: x}\napply:\n  batch_max_bytes: 16mb\n" + kTail, "3:20",
        "unknown unit \"mb\" (expected an integer with an optional unit B, kB, KB, MB or GB");
}

TEST_CASE("a zero size is rejected", "[config]") {
    check_error("source: {dsn: x}\napply:\n  batch_max_bytes: 0MB\n" + kTail, "3:20",
                "apply.batch_max_bytes must be greater than 0");
}

TEST_CASE("batch_max_rows must be a positive integer", "[config]") {
    for (const char* bad : {"0", "-5", "1.5", "1e4", "ten"}) {
        INFO(bad);
        check_error(
            std::string("source: {dsn: x}\napply:\n  batch_max_rows: ") + bad + "\n" + kTail,
            "3:19",
            "apply.batch_max_rows must be a positive integer, not \"" + std::string(bad) + "\"");
    }
}

TEST_CASE("an unknown on_error policy lists the valid ones", "[config]") {
    check_error("source: {dsn: x}\napply:\n  on_error: skip\n" + kTail, "3:13",
                "apply.on_error \"skip\" is not one of stop, dead_letter");
}

TEST_CASE("apply.synchronous_commit takes YAML 1.2 booleans only", "[config]") {
    check_error("source: {dsn: x}\napply:\n  synchronous_commit: off\n" + kTail, "3:23",
                "apply.synchronous_commit must be true or false, not \"off\"");
}

TEST_CASE("dead-letter with a hyphen suggests dead_letter", "[config]") {
    check_error("source: {dsn: x}\napply:\n  on_error: dead-letter\n" + kTail, "3:13",
                "(did you mean \"dead_letter\"?)");
}

TEST_CASE("a max_backoff below initial_backoff is rejected at max_backoff", "[config]") {
    check_error("source: {dsn: x}\nreconnect:\n  initial_backoff: 5s\n  max_backoff: 1s\n" + kTail,
                "4:16",
                "reconnect.max_backoff (1s) must be at least reconnect.initial_backoff (5s)");
}

TEST_CASE("an initial_backoff above the default max_backoff is rejected at initial_backoff",
          "[config]") {
    check_error("source: {dsn: x}\nreconnect:\n  initial_backoff: 1m\n" + kTail, "3:20",
                "reconnect.max_backoff (30s) must be at least reconnect.initial_backoff (1m)");
}

TEST_CASE("a zero initial_backoff is rejected", "[config]") {
    check_error("source: {dsn: x}\nreconnect: {initial_backoff: 0}\n" + kTail, "2:30",
                "reconnect.initial_backoff must be greater than 0");
}

TEST_CASE("a listen address without a port is rejected", "[config]") {
    check_error("source: {dsn: x}\nstatus:\n  listen: localhost\n" + kTail, "3:11",
                "status.listen \"localhost\" has no port");
}

TEST_CASE("a bare IPv6 listen address needs brackets", "[config]") {
    check_error("source: {dsn: x}\nstatus:\n  listen: \"::1:8080\"\n" + kTail, "3:11",
                "needs brackets around an IPv6 address");
}

TEST_CASE("a listen port above 65535 is rejected", "[config]") {
    check_error("source: {dsn: x}\nstatus:\n  listen: 127.0.0.1:70000\n" + kTail, "3:11",
                "has an invalid port (1-65535)");
    check_error("source: {dsn: x}\nstatus:\n  listen: \"[::1]8080\"\n" + kTail, "3:11",
                "\"[::1]8080\" has no port");
    check_error("source: {dsn: x}\nstatus:\n  listen: \":8080\"\n" + kTail, "3:11", "has no host");
}

TEST_CASE("a config without mappings is rejected", "[config]") {
    check_error("source: {dsn: x}\ntarget: {dsn: y}\n", "1:1",
                "missing required key \"mappings\" at the top level");
}

TEST_CASE("an empty mappings list is rejected", "[config]") {
    check_error("source: {dsn: x}\ntarget: {dsn: y}\nmappings: []\n", "3:11",
                "mappings must not be empty");
    check_error("source: {dsn: x}\ntarget: {dsn: y}\nmappings:\n", "3:1",
                "mappings must not be empty");
}

TEST_CASE("mappings written as a mapping are rejected", "[config]") {
    check_error("source: {dsn: x}\ntarget: {dsn: y}\nmappings:\n  users: {key: id}\n", "4:3",
                "mappings must be a list, not a mapping");
}

TEST_CASE("a mapping that is a string is rejected", "[config]") {
    check_error("source: {dsn: x}\ntarget: {dsn: y}\nmappings:\n  - public.users\n", "4:5",
                "mappings[0] must be a mapping, not a string");
}

TEST_CASE("a mapping without a source table points at the mapping", "[config]") {
    check_error("source: {dsn: x}\ntarget: {dsn: y}\nmappings:\n  - key: id\n    fields: {a: b}\n",
                "4:5", "missing required key \"source\" in mappings[0]");
}

TEST_CASE("a mapping without a key is rejected", "[config]") {
    check_error(
        "source: {dsn: x}\ntarget: {dsn: y}\nmappings:\n  - source: users\n    fields: {a: b}\n",
        "4:5", "missing required key \"key\" in mappings[0]");
}

TEST_CASE("a mapping without fields is rejected", "[config]") {
    check_error("source: {dsn: x}\ntarget: {dsn: y}\nmappings:\n  - source: users\n    key: id\n",
                "4:5", "missing required key \"fields\" in mappings[0]");
}

TEST_CASE("an unknown key in a mapping suggests on_delete", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields: {a: b}
    on_delet: soft
)",
                "7:5", "unknown key \"on_delet\" in mappings[0] (did you mean \"on_delete\"?)");
}

TEST_CASE("an unknown on_delete lists soft and hard", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - {source: users, key: id, fields: {a: b}, on_delete: archive}
)",
                "4:57", "mappings[0].on_delete \"archive\" is not one of soft, hard");
}

TEST_CASE("an empty key column list is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: []
    fields: {a: b}
)",
                "5:10", "mappings[0].key must not be an empty list");
}

TEST_CASE("a key written as a mapping is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: {column: id}
    fields: {a: b}
)",
                "5:10", "mappings[0].key must be a column name or a list of column names");
}

TEST_CASE("a key column listed twice is rejected at the second", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: [tenant, id, tenant]
    fields: {a: b}
)",
                "5:23", "mappings[0].key: column \"tenant\" is listed twice");
}

TEST_CASE("an empty key column name is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: ""
    fields: {a: b}
)",
                "5:10", "mappings[0].key: empty identifier");
}

TEST_CASE("fields written as a list are rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields: [name, email]
)",
                "6:13",
                "mappings[0].fields must be a mapping of raw_json keys to columns, not a list");
}

TEST_CASE("empty fields are rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields: {}
)",
                "6:13", "mappings[0].fields must not be empty");
}

TEST_CASE("a raw_json key written twice is reported at the second", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields:
      email: email
      name: name
      email: primary_email
)",
                "9:7", "duplicate key \"email\" in mappings[0].fields (first at line 7)");
}

TEST_CASE("a field value that is a list is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields:
      email: [a, b]
)",
                "7:14",
                "mappings[0].fields.email must be a column name or {column: C, as: CONVERSION}");
}

TEST_CASE("a field mapping without a column is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields:
      created: {as: epoch_millis}
)",
                "7:7", "missing required key \"column\" in mappings[0].fields.created");
}

TEST_CASE("a misspelt field option suggests column", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields:
      created: {colum: created_at}
)",
                "7:17",
                "unknown key \"colum\" in mappings[0].fields.created (did you mean \"column\"?)");
}

TEST_CASE("an unknown conversion lists the valid ones", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields:
      created: {column: created_at, as: epoch_mills}
)",
                "7:41",
                "mappings[0].fields.created.as \"epoch_mills\" is not one of auto, epoch_millis, "
                "text (did you mean \"epoch_millis\"?)");
}

TEST_CASE("a column name longer than 63 bytes is rejected", "[config]") {
    check_error(
        "source: {dsn: x}\ntarget: {dsn: y}\nmappings:\n  - source: users\n    key: id\n"
        "    fields:\n      email: " +
            std::string(70, 'c') + "\n",
        "7:14", "mappings[0].fields.email: identifier");
}

TEST_CASE("a field named id must map the single key column", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields:
      id: user_id
)",
                "7:11",
                "mappings[0].fields.id maps column \"user_id\", but the key is column \"id\"");
}

TEST_CASE("a field named id is not allowed with a composite key", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: [tenant, id]
    fields:
      name: name
      id: id
)",
                "8:7", "mappings[0].fields.id is not allowed with a composite key");
}

TEST_CASE("the same source table mapped twice is reported at the second", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: users
    key: id
    fields: {a: b}
  - source: public.users
    key: id
    fields: {a: b}
)",
                "7:13",
                "mappings[1]: duplicate mapping for source table public.users (first at line 4)");
}

TEST_CASE("a source name of three parts is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - {source: db.public.users, key: id, fields: {a: b}}
)",
                "4:14", "\"db.public.users\" has 3 parts (expected \"schema.table\" or \"table\")");
}

TEST_CASE("an unquoted source name with capitals is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - {source: public.Users, key: id, fields: {a: b}}
)",
                "4:14",
                "unquoted identifier \"Users\" has upper-case letters (write '\"Users\"' for that "
                "exact name, or \"users\")");
}

TEST_CASE("an unquoted source name with a hyphen or a leading digit is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: auth.user-table
    key: id
    fields: {a: b}
)",
                "4:13",
                "mappings[0].source: unquoted identifier \"user-table\" may contain only "
                "[a-z0-9_$] (double-quote it otherwise)");
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: 1users
    key: id
    fields: {a: b}
)",
                "4:13", "unquoted identifier \"1users\" must not start with a digit");
}

TEST_CASE("an unterminated quoted identifier is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - source: '"Auth.users'
    key: id
    fields: {a: b}
)",
                "4:13", "mappings[0].source: unterminated quoted identifier");
}

TEST_CASE("a source name with an empty part is rejected", "[config]") {
    check_error(R"(source: {dsn: x}
target: {dsn: y}
mappings:
  - {source: public., key: id, fields: {a: b}}
)",
                "4:14", "mappings[0].source: empty identifier");
}

TEST_CASE("a target table name longer than 63 bytes is rejected", "[config]") {
    check_error(
        "source: {dsn: x}\ntarget: {dsn: y}\nmappings:\n  - source: users\n    target: "
        "neon_auth." +
            std::string(64, 't') + "\n    key: id\n    fields: {a: b}\n",
        "5:13", "mappings[0].target: identifier");
}

TEST_CASE("an unset environment variable is named", "[config]") {
    check_error("source:\n  dsn: \"password=${AUTH_PW}\"\n" + kTail, "2:8",
                "environment variable AUTH_PW is not set (used in source.dsn)");
}

TEST_CASE("an invalid variable name is rejected", "[config]") {
    check_error("source: {dsn: x, slot: \"${1SLOT}\"}\n" + kTail, "1:24",
                "invalid variable reference in source.slot (expected ${NAME}");
}

TEST_CASE("an unterminated variable reference is rejected", "[config]") {
    check_error("source: {dsn: x}\nstatus: {listen: \"${HOST:8080\"}\n" + kTail, "2:18",
                "unterminated \"${\" in status.listen");
}

TEST_CASE("a value that expands to an invalid one is validated after expansion", "[config]") {
    check_error("source: {dsn: x, slot: \"${SLOT}\"}\n" + kTail, "1:24",
                "source.slot \"Bad-Slot\" is not a valid replication slot name",
                fake_env({{"SLOT", "Bad-Slot"}}));
}

TEST_CASE("a password never appears in an error message", "[config]") {
    const std::string pw = "hunter2";
    auto env = fake_env({{"AUTH_PW", pw}});
    const std::string dsn = "host=a user=u password=" + pw;
    const std::string bad_configs[] = {
        "source:\n  dsn: \"" + dsn + "\"\n  dsn: \"" + dsn + "\"\n" + kTail,
        "source:\n  dsn: {password: " + pw + "}\n" + kTail,
        "source:\n  dsn: [" + dsn + "]\n" + kTail,
        "source:\n  dsn: \"" + dsn + " x=${UNSET}\"\n" + kTail,
        "source:\n  dsn: \"" + dsn + " x=${" + pw + "-1}\"\n" + kTail,
        "source:\n  dsn: \"" + dsn + " x=${" + pw + "\"\n" + kTail,
        "source:\n  dsn: \"" + dsn + "\n" + kTail,
        "source:\n  dsn: \"" + dsn + "\\q\"\n" + kTail,
        "source:\n  dsn: \"" + dsn + "\"\n  dns: \"" + dsn + "\"\n" + kTail,
        "source:\n  dsn: \"password=${AUTH_PW}\"\n  slot: \"bad slot\"\n" + kTail,
        "source: {dsn: \"password=${AUTH_PW}\"}\ntarget: {dsn: \"" + dsn + "\", x: 1}\n",
        "source: {dsn: \"" + dsn + "\"}\ntarget: {dsn: \"" + dsn + "\"}\nmappings: []\n",
    };
    for (const auto& yaml : bad_configs) {
        auto message = error_of(yaml, env);
        INFO(message);
        CHECK_THAT(message, StartsWith("t.yaml:"));
        CHECK_THAT(message, !Contains(pw));
    }
}

// --- files ---------------------------------------------------------------------------------------

TEST_CASE("a missing config file is a ConfigError naming the file", "[config]") {
    const std::string path = "/nonexistent/authsync.yaml";
    CHECK_THROWS_MATCHES(
        config::load_config(path, kNoEnv), ConfigError,
        Catch::Matchers::Message("/nonexistent/authsync.yaml: cannot read config: No such file or "
                                 "directory"));
}

TEST_CASE("a directory given as the config file is a ConfigError", "[config]") {
    CHECK_THROWS_WITH(config::load_config(conf_dir(), kNoEnv),
                      StartsWith(conf_dir() + ": cannot read config: "));
}

TEST_CASE("errors in a loaded file carry the file's path", "[config]") {
    auto path = std::filesystem::temp_directory_path() / "authsync_config_test.yaml";
    {
        std::FILE* f = std::fopen(path.c_str(), "w");
        REQUIRE(f);
        std::fputs("source:\n  dns: x\n", f);
        std::fclose(f);
    }
    CHECK_THROWS_WITH(config::load_config(path.string(), kNoEnv),
                      StartsWith(path.string() + ":2:3: unknown key \"dns\" in source"));
    std::filesystem::remove(path);
}

TEST_CASE("the quickstart config parses", "[config]") {
    auto c = config::load_config(conf_dir() + "/authsync.yaml", kNoEnv);
    CHECK(c.source.dsn == "host=127.0.0.1 port=54321 dbname=auth user=postgres");
    CHECK(c.target.dsn == "host=127.0.0.1 port=54322 dbname=app user=postgres");
    CHECK(c.source.slot == "authsync");
    CHECK(c.source.publication == "authsync");
    CHECK(c.status.listen == "127.0.0.1:8080");
    REQUIRE(c.mappings.size() == 1);
    CHECK(c.mappings[0].source_name() == "public.users");
    CHECK(c.mappings[0].target_name() == "neon_auth.users_sync");
    CHECK(c.mappings[0].fields.size() == 5);
}

TEST_CASE("every example config parses", "[config]") {
    // The examples take passwords from the environment; any value will do here. Presets come
    // from the source tree's (AUTHSYNC_PRESETS_DIR unset).
    EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
        if (name == "AUTHSYNC_PRESETS_DIR") return std::nullopt;
        return "value-of-" + name;
    };
    std::vector<std::string> files = {conf_dir() + "/authsync.yaml",
                                      conf_dir() + "/authsync.example.yaml"};
    if (std::filesystem::is_directory(conf_dir() + "/examples")) {
        for (const auto& entry : std::filesystem::directory_iterator(conf_dir() + "/examples")) {
            if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
        }
    }
    std::sort(files.begin(), files.end());
    REQUIRE_FALSE(files.empty());
    for (const auto& file : files) {
        INFO(file);
        CHECK_NOTHROW(config::load_config(file, env));
    }
    auto c = config::load_config(conf_dir() + "/authsync.example.yaml", env);
    CHECK(c.source.dsn.find("password=value-of-AUTH_PW") != std::string::npos);
    CHECK(c.mappings.at(0).source_schema == "Auth");
    CHECK(c.mappings.at(0).source_table == "ProjectUser");
}

TEST_CASE("process_env reads the process environment", "[config]") {
    ::setenv("AUTHSYNC_CONFIG_TEST_VAR", "from-env", 1);
    auto env = config::process_env();
    CHECK(env("AUTHSYNC_CONFIG_TEST_VAR") == std::optional<std::string>("from-env"));
    ::unsetenv("AUTHSYNC_CONFIG_TEST_VAR");
    CHECK_FALSE(env("AUTHSYNC_CONFIG_TEST_VAR"));
}
