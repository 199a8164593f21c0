// `authsync check`, `init` and `teardown` against real servers.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "sync_fixture.hpp"

using namespace authsync;
using test::SyncFixture;

namespace {

std::string write_config(const std::string& path, const std::string& source_dsn,
                         const std::string& target_dsn, const std::string& mappings) {
    std::ofstream f(path);
    f << "source:\n  dsn: \"" << source_dsn << "\"\n  slot: check_slot\n"
      << "target:\n  dsn: \"" << target_dsn << "\"\n"
      << "mappings:\n"
      << mappings;
    return path;
}

}  // namespace

TEST_CASE("check passes on a well-prepared provider and target", "[commands][integration]") {
    SyncFixture f;
    auto out = test::run_cli("check --config " + f.config_path());
    INFO(out.text);
    CHECK(out.rc == 0);
    CHECK_THAT(out.text, Catch::Contains("all checks passed"));
}

TEST_CASE("check reports every problem with a hint, and never a password",
          "[commands][integration]") {
    SyncFixture f;
    f.provider().exec("CREATE TABLE public.nopk (id text, name text)");
    auto path = write_config(
        f.config_path() + ".bad.yaml", test::provider_cluster().dsn(f.provider_db),
        "host=127.0.0.1 port=1 dbname=app user=app password=sentinel-secret-pw",
        "  - source: public.nopk\n    key: id\n    fields:\n      display_name: name\n"
        "      primary_email: no_such_column\n"
        "  - source: public.missing_table\n    key: id\n    fields:\n      display_name: name\n");
    auto out = test::run_cli("check --config " + path);
    INFO(out.text);
    CHECK(out.rc == 1);
    CHECK_THAT(out.text, Catch::Contains("neither a primary key nor a replica identity") &&
                             Catch::Contains("REPLICA IDENTITY FULL"));
    CHECK_THAT(out.text, Catch::Contains("\"no_such_column\"") &&
                             Catch::Contains("not found in \"public\".\"nopk\""));
    CHECK_THAT(out.text, Catch::Contains("public\".\"missing_table\" does not exist"));
    CHECK_THAT(out.text, Catch::Contains("target:") && Catch::Contains("Connection refused"));
    CHECK_THAT(out.text, !Catch::Contains("sentinel-secret-pw"));
    CHECK_THAT(out.text, Catch::Contains("password=***"));
}

TEST_CASE("check says when wal_level is not logical", "[commands][integration]") {
    test::PgCluster replica_level("walreplica", {"wal_level = replica"});
    SyncFixture f;  // for its target
    replica_level.connect().exec("CREATE TABLE public.users (id text PRIMARY KEY, name text)");
    auto path = write_config(
        f.config_path() + ".wal.yaml", replica_level.dsn("postgres"),
        test::target_cluster().dsn(f.target_db),
        "  - source: public.users\n    key: id\n    fields:\n      display_name: name\n");
    auto out = test::run_cli("check --config " + path);
    INFO(out.text);
    CHECK(out.rc == 1);
    CHECK_THAT(out.text, Catch::Contains("wal_level is 'replica'") &&
                             Catch::Contains("ALTER SYSTEM SET wal_level = logical"));
}

TEST_CASE("init creates what is missing; teardown drops the slot and keeps the users",
          "[commands][integration]") {
    SyncFixture f;
    auto out = test::run_cli("init --config " + f.config_path());
    INFO(out.text);
    REQUIRE(out.rc == 0);
    CHECK(f.provider_value("SELECT count(*) FROM pg_publication WHERE pubname = 'authsync'") ==
          "1");
    auto slot = test::provider_cluster().connect().exec_params(
        "SELECT plugin FROM pg_replication_slots WHERE slot_name = $1", pg::params(f.slot()));
    REQUIRE(slot.rows() == 1);
    CHECK(slot.get(0, 0) == "pgoutput");
    CHECK(f.target_value("SELECT to_regclass('neon_auth.users_sync') IS NOT NULL") == "t");
    // Idempotent.
    CHECK(test::run_cli("init --config " + f.config_path()).rc == 0);

    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('keep', 'Kept')");
    REQUIRE(test::wait_until(
        [&] { return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "1"; }));
    REQUIRE(f.stop() == 0);

    out = test::run_cli("teardown --config " + f.config_path());
    INFO(out.text);
    CHECK(out.rc == 0);
    CHECK(test::provider_cluster()
              .connect()
              .exec_params("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                           pg::params(f.slot()))
              .rows() == 0);
    CHECK(f.provider_value("SELECT count(*) FROM pg_publication WHERE pubname = 'authsync'") ==
          "0");
    CHECK(f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'keep'") == "Kept");
}

TEST_CASE("every command has --help, and --version answers", "[commands]") {
    for (const char* cmd : {"run", "check", "init", "teardown", "decode"}) {
        auto out = test::run_cli(std::string(cmd) + " --help");
        INFO(cmd);
        CHECK(out.rc == 0);
        CHECK_THAT(out.text, Catch::Contains("Usage"));
    }
    auto v = test::run_cli("--version");
    CHECK(v.rc == 0);
    CHECK_THAT(v.text, Catch::StartsWith("authsync "));
    // Wrong usage is exit code 2, as the README says.
    CHECK(test::run_cli("no-such-command").rc == 2);
    CHECK(test::run_cli("run --no-such-option").rc == 2);
    CHECK(test::run_cli("run --log-level loud").rc == 2);
    CHECK(test::run_cli("").rc == 2);
}

TEST_CASE("a malformed config stops with exit code 1 and names the line", "[commands]") {
    auto path = std::string("/tmp/authsync-bad-config.yaml");
    {
        std::ofstream f(path);
        f << "source:\n  dns: x\n";
    }
    auto out = test::run_cli("run --config " + path);
    CHECK(out.rc == 1);
    CHECK_THAT(out.text, Catch::Contains("authsync-bad-config.yaml:2:3"));
    std::remove(path.c_str());
}

TEST_CASE("peek shows pending changes decoded, without consuming them", "[commands][integration]") {
    SyncFixture f;
    REQUIRE(test::run_cli("init --config " + f.config_path()).rc == 0);
    f.provider().exec(
        "INSERT INTO public.users (id, name, email) VALUES ('pk1', 'Peek', 'peek@example.com')");
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('pk2', 'Two')");
    auto first = test::run_cli("peek --config " + f.config_path());
    INFO(first.text);
    CHECK(first.rc == 0);
    CHECK_THAT(first.text, Catch::Contains("\"type\":\"Insert\"") &&
                               Catch::Contains("\"value\":\"peek@example.com\"") &&
                               Catch::Contains("\"value\":\"pk2\""));
    CHECK(test::run_cli("peek --config " + f.config_path()).text == first.text);
    auto limited = test::run_cli("peek --limit 1 --config " + f.config_path());
    CHECK(limited.rc == 0);
    CHECK_THAT(limited.text, Catch::Contains("pk1") && !Catch::Contains("pk2"));
    // While authsync streams, the slot is busy: peek says so.
    f.start();
    auto busy = test::run_cli("peek --config " + f.config_path());
    CHECK(busy.rc == 1);
    CHECK_THAT(busy.text, Catch::Contains("stop it first"));
    CHECK(f.stop() == 0);
}

TEST_CASE("peek stops after 1000 changes unless --limit 0 asks for the whole backlog",
          "[commands][integration]") {
    SyncFixture f;
    REQUIRE(test::run_cli("init --config " + f.config_path()).rc == 0);
    // 1500 transactions of one insert each: 4500 rows from the slot (Begin, Insert, Commit).
    f.provider().exec(
        "DO $$ BEGIN FOR i IN 1..1500 LOOP "
        "INSERT INTO public.users (id, name) VALUES ('bk' || i, 'Backlog'); COMMIT; "
        "END LOOP; END $$");
    auto count_inserts = [](const std::string& text) {
        std::size_t n = 0;
        for (auto pos = text.find("\"type\":\"Insert\""); pos != std::string::npos;
             pos = text.find("\"type\":\"Insert\"", pos + 1)) {
            ++n;
        }
        return n;
    };
    auto bounded = test::run_cli("peek --config " + f.config_path());
    CHECK(bounded.rc == 0);
    const auto shown = count_inserts(bounded.text);
    CHECK(shown > 0);
    CHECK(shown < 1500);
    CHECK_THAT(bounded.text, Catch::Contains("--limit 0"));
    auto all = test::run_cli("peek --limit 0 --config " + f.config_path());
    CHECK(all.rc == 0);
    CHECK(count_inserts(all.text) == 1500);
    CHECK_THAT(all.text, !Catch::Contains("--limit 0"));
    CHECK_THAT(test::run_cli("peek --help").text,
               Catch::Contains("default: 1000") && Catch::Contains("0: all"));
}

TEST_CASE(
    "check warns of a status endpoint beyond loopback without token or tls, and of a "
    "remote database without sslmode=verify-full",
    "[commands][integration][tls]") {
    SyncFixture f;
    const auto path = f.config_path() + ".exposed.yaml";
    {
        // hostaddr connects to the local test server; host names the server as a remote one.
        std::ofstream out(path);
        out << "source:\n  dsn: \"" << test::provider_cluster().dsn(f.provider_db)
            << " host=authdb.internal hostaddr=127.0.0.1 sslmode=prefer\"\n"
            << "  slot: " << f.slot() << "\n"
            << "target:\n  dsn: \"" << test::target_cluster().dsn(f.target_db) << "\"\n"
            << "status:\n  listen: \"0.0.0.0:" << test::free_port() << "\"\n"
            << "mappings:\n  - source: public.users\n    key: id\n    fields:\n"
            << "      display_name: name\n      primary_email: email\n";
    }
    auto out = test::run_cli("check --config " + path);
    INFO(out.text);
    CHECK(out.rc == 0);  // warnings, not problems
    CHECK_THAT(out.text, Catch::Contains("warning: status.listen 0.0.0.0:") &&
                             Catch::Contains("no status.token") &&
                             Catch::Contains("no status.tls"));
    CHECK_THAT(out.text, Catch::Contains("warning: source.dsn: host authdb.internal") &&
                             Catch::Contains("sslmode=prefer"));
    CHECK_THAT(out.text, !Catch::Contains("warning: target.dsn"));
    // The well-prepared config (loopback endpoint, local databases) has nothing to warn of.
    auto clean = test::run_cli("check --config " + f.config_path());
    CHECK_THAT(clean.text, !Catch::Contains("warning:"));
}

TEST_CASE("a mapped table missing from an existing publication stops authsync with advice",
          "[integration][commands]") {
    SyncFixture f;
    f.provider().exec("CREATE PUBLICATION authsync FOR TABLE public.unrelated");
    f.start_unchecked();
    CHECK(f.process().wait(std::chrono::seconds(30)) == 1);
    CHECK_THAT(f.process().log(),
               Catch::Contains("publication \"authsync\" does not include public.users") &&
                   Catch::Contains("ALTER PUBLICATION"));
}

TEST_CASE("sink refuses a config without the transport, and names the targets it has",
          "[commands][jetstream]") {
    const auto dir = std::filesystem::temp_directory_path() / "authsync-sink-cli";
    std::filesystem::create_directories(dir);
    const std::string mapping =
        "    mappings:\n      - source: public.users\n        key: id\n"
        "        fields: {display_name: name}\n";
    const std::string targets =
        "targets:\n  - name: acme\n    dsn: \"host=127.0.0.1 dbname=a\"\n" + mapping +
        "  - name: globex\n    dsn: \"host=127.0.0.1 dbname=b\"\n" + mapping;
    const auto plain = (dir / "plain.yaml").string();
    std::ofstream(plain) << "source: {dsn: \"host=127.0.0.1 dbname=p\"}\n" << targets;
    auto out = test::run_cli("sink --config " + plain + " --target acme");
    CHECK(out.rc == 1);
    CHECK_THAT(out.text, Catch::Contains("sink needs transport.kind: nats"));
    const auto nats = (dir / "nats.yaml").string();
    std::ofstream(nats) << "source: {dsn: \"host=127.0.0.1 dbname=p\"}\n"
                        << "transport: {kind: nats, servers: nats://127.0.0.1:1}\n"
                        << targets;
    out = test::run_cli("sink --config " + nats + " --target acme --target initech");
    CHECK(out.rc == 1);
    CHECK_THAT(out.text, Catch::Contains("no target named \"initech\"") &&
                             Catch::Contains("(targets: acme, globex)"));
    // Without --target: a usage error.
    CHECK(test::run_cli("sink --config " + nats).rc == 2);
    std::filesystem::remove_all(dir);
}
