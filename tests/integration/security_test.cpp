// Security and resilience on real servers: secrets and users' data stay out of every output,
// TLS with certificate verification to both databases, hostile identifiers and values, and
// outages of the target, the provider and the slot.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "authsync/core/sql.hpp"
#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using nlohmann::json;
using test::SyncFixture;
using test::wait_until;

namespace {

struct HttpResult {
    int code = 0;
    std::string body;
};

HttpResult http_get(const std::string& url) {
    auto out = test::run_shell_output("curl -s -m 5 -w '\\n%{http_code}' '" + url + "' || true");
    auto nl = out.rfind('\n');
    if (nl == std::string::npos) return {0, out};
    return {std::atoi(out.substr(nl + 1).c_str()), out.substr(0, nl)};
}

// The /status JSON, or null when the endpoint does not answer (yet).
json status_of(const std::string& status_url) {
    auto r = http_get(status_url + "/status");
    if (r.code != 200) return nullptr;
    return json::parse(r.body, nullptr, false);
}

std::string last_error_of(const json& s) {
    if (!s.is_object() || !s["last_error"].is_object()) return {};
    return s["last_error"].value("message", "");
}

// Shows a child's log when a REQUIRE fails while it exists (as SyncFixture does for its own).
struct LogOnFailure {
    const test::Process& process;
    ~LogOnFailure() {
        if (std::uncaught_exceptions() > 0 || std::getenv("AUTHSYNC_TEST_VERBOSE")) {
            std::fprintf(stderr, "---- authsync log ----\n%s\n----\n", process.log().c_str());
        }
    }
};

std::string make_temp_dir(const std::string& what) {
    std::string tmpl = "/tmp/authsync-" + what + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    return tmpl;
}

// A config for `authsync run` written by the test itself (databases of its choosing).
struct RunConfig {
    std::string source_dsn;
    std::string target_dsn;
    std::string slot;
    std::string publication = "authsync";
    int status_port = 0;
    std::string mappings;  // the YAML under `mappings:`
};

void write_run_config(const std::string& path, const RunConfig& c) {
    std::ofstream f(path);
    f << "source:\n"
      << "  dsn: \"" << c.source_dsn << "\"\n"
      << "  slot: " << c.slot << "\n"
      << "  publication: '" << c.publication << "'\n"
      << "  status_interval: 200ms\n"
      << "  heartbeat_interval: 1s\n"
      << "target:\n"
      << "  dsn: \"" << c.target_dsn << "\"\n"
      << "status:\n"
      << "  listen: \"127.0.0.1:" << c.status_port << "\"\n"
      << "reconnect:\n"
      << "  initial_backoff: 100ms\n"
      << "  max_backoff: 1s\n"
      << "mappings:\n"
      << c.mappings;
}

const std::string kUsersMapping =
    "  - source: public.users\n"
    "    key: id\n"
    "    fields:\n"
    "      id: id\n"
    "      display_name: name\n"
    "      primary_email: email\n";

// The fixture's slot, target and users mapping with another source DSN, on a port of its own.
RunConfig source_dsn_config(const SyncFixture& f, const std::string& source_dsn) {
    RunConfig rc;
    rc.source_dsn = source_dsn;
    rc.target_dsn = test::target_cluster().dsn(f.target_db);
    rc.slot = f.slot();
    rc.status_port = test::free_port();
    rc.mappings = kUsersMapping;
    return rc;
}

bool slot_active(const test::PgCluster& cluster, const std::string& slot) {
    auto r = cluster.connect().exec_params(
        "SELECT active FROM pg_replication_slots WHERE slot_name = $1", pg::params(slot));
    return r.rows() == 1 && r.get(0, 0) == "t";
}

std::string value(pg::Connection conn, const std::string& sql, const pg::Params& params = {}) {
    auto r = conn.exec_params(sql, params);
    if (r.rows() == 0 || r.is_null(0, 0)) return "<null>";
    return std::string(r.get(0, 0));
}

// A throwaway CA, a server certificate for localhost signed by it, and a second, unrelated CA.
struct TlsMaterial {
    std::string dir;
    std::string ca_crt, other_ca_crt, server_crt, server_key;

    TlsMaterial() {
        if (test::run_shell("command -v openssl >/dev/null 2>&1") != 0) {
            FAIL("the openssl CLI is missing (Debian package openssl; scripts/setup-deps)");
        }
        dir = make_temp_dir("tls");
        ca_crt = dir + "/ca.crt";
        other_ca_crt = dir + "/other-ca.crt";
        server_crt = dir + "/server.crt";
        server_key = dir + "/server.key";
        const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
        const std::string in_dir = "cd '" + dir + "' && ";
        auto run = [&](const std::string& cmd) { test::run_shell_output(in_dir + cmd + " 2>&1"); };
        run("openssl req -x509" + ec +
            "-keyout ca.key -out ca.crt -days 2 -subj '/CN=authsync test CA'");
        run("openssl req -x509" + ec +
            "-keyout other-ca.key -out other-ca.crt -days 2 "
            "-subj '/CN=authsync other CA'");
        run("openssl req -new" + ec + "-keyout server.key -out server.csr -subj '/CN=localhost'");
        run("printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > server.ext");
        run("openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
            "-out server.crt -days 2 -extfile server.ext");
        // The server (user postgres) reads the certificate and its own 0600 key; the CA keys
        // stay the test's.
        ::chmod(dir.c_str(), 0755);
        ::chmod(server_crt.c_str(), 0644);
        ::chmod(server_key.c_str(), 0600);
        if (::geteuid() == 0) test::run_shell("chown postgres: '" + server_key + "'");
    }
    ~TlsMaterial() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    TlsMaterial(const TlsMaterial&) = delete;
    TlsMaterial& operator=(const TlsMaterial&) = delete;
};

}  // namespace

TEST_CASE(
    "passwords and users' personal data never appear in logs, status, metrics, the page "
    "or check",
    "[security][integration]") {
    const std::string password = "sentinel-pw-4242";
    const std::string email = "pii-sentinel@example.com";
    const std::string name = "PII Sentinel";
    test::SyncOptions options;
    options.dsn_suffix = " password=" + password;  // trust auth: the server ignores it
    options.log_level = "info";                    // the default: what operators keep
    SyncFixture f(options);
    f.start();
    auto p = f.provider();
    p.exec_params("INSERT INTO public.users (id, name, email) VALUES ('pii-1', $1, $2)",
                  pg::params(name, email));
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT email FROM neon_auth.users_sync") == email; }, 30s));
    // The user's data went through authsync: it is what must not come out anywhere else.
    CHECK(f.target_value("SELECT name FROM neon_auth.users_sync") == name);

    std::vector<std::pair<std::string, std::string>> outputs;  // where, what it said
    auto collect = [&](const std::string& when) {
        for (const char* path : {"/status", "/metrics", "/"}) {
            auto r = http_get(f.status_url() + path);
            CHECK(r.code == 200);
            outputs.emplace_back(when + " " + path, r.body);
        }
    };
    collect("streaming");

    // A transient error that names the target's DSN: the target refuses connections for a
    // while, so every reconnect fails with "could not connect to <dsn>".
    auto admin = test::target_cluster().connect();
    admin.exec("ALTER DATABASE " + quote_identifier(f.target_db) + " ALLOW_CONNECTIONS false");
    admin.exec_params(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND application_name = 'authsync'",
        pg::params(f.target_db));
    p.exec("UPDATE public.users SET version = 2 WHERE id = 'pii-1'");
    json s;
    bool refused = wait_until(
        [&] {
            s = status_of(f.status_url());
            return last_error_of(s).find("not currently accepting connections") !=
                   std::string::npos;
        },
        20s);
    CHECK(refused);
    if (refused) {
        CHECK(s["state"] == "reconnecting");
        // The DSN is there to help, with its password masked.
        CHECK_THAT(last_error_of(s), Catch::Contains("password=***"));
    }
    collect("reconnecting");
    auto check = test::run_cli("check --config " + f.config_path());
    CHECK(check.rc == 1);  // the target refuses connections
    CHECK_THAT(check.text, Catch::Contains("password=***"));
    outputs.emplace_back("check (target refusing)", check.text);
    admin.exec("ALTER DATABASE " + quote_identifier(f.target_db) + " ALLOW_CONNECTIONS true");
    REQUIRE(wait_until(
        [&] {
            return f.target_value("SELECT raw_json->>'version' FROM neon_auth.users_sync") == "2";
        },
        30s));
    check = test::run_cli("check --config " + f.config_path());
    CHECK(check.rc == 0);
    outputs.emplace_back("check", check.text);

    // A permanent error whose server DETAIL carries the row: a unique violation on the email
    // ("Key (email)=(...) already exists") stops authsync.
    f.target().exec("CREATE UNIQUE INDEX users_sync_email_key ON neon_auth.users_sync (email)");
    p.exec_params("INSERT INTO public.users (id, name, email) VALUES ('pii-2', $1, $2)",
                  pg::params(name, email));
    CHECK(f.process().wait(30s) == 1);
    auto log = f.process().log();
    CHECK_THAT(log, Catch::Contains("23505"));
    CHECK_THAT(log, Catch::Contains("password=***"));
    outputs.emplace_back("log", log);

    for (const auto& [where, text] : outputs) {
        INFO(where << ":\n" << text);
        CHECK_FALSE(text.empty());
        CHECK_THAT(text, !Catch::Contains(password));
        CHECK_THAT(text, !Catch::Contains(email, Catch::CaseSensitive::No));
        CHECK_THAT(text, !Catch::Contains(name, Catch::CaseSensitive::No));
    }
}

// Each word of `secret` (split at spaces) is absent from `text`.
void check_secret_absent(const std::string& text, const std::string& secret) {
    std::size_t start = 0;
    while (start < secret.size()) {
        auto end = std::min(secret.find(' ', start), secret.size());
        auto word = secret.substr(start, end - start);
        if (!word.empty()) CHECK_THAT(text, !Catch::Contains(word));
        start = end + 1;
    }
}

TEST_CASE(
    "a dsn libpq cannot parse stops check and run with a config error that shows none of "
    "the dsn",
    "[security][integration]") {
    SyncFixture f;  // for its databases and slot name; its own run is not started
    const auto& provider = test::provider_cluster();
    const auto host_port = "127.0.0.1:" + std::to_string(provider.port());
    struct Case {
        std::string dsn, secret;
    };
    const std::vector<Case> cases = {
        // libpq: missing "=" after "horse"
        {provider.dsn(f.provider_db) + " password=correct horse battery", "correct horse battery"},
        // libpq: invalid percent-encoded token: "abc%zzTopSecret"
        {"postgresql://postgres:abc%zzTopSecret@" + host_port + "/" + f.provider_db, "zzTopSecret"},
        // libpq parses `p` as the password and `ssW0rdTail@127.0.0.1` as the host
        {"postgresql://postgres:p@ssW0rdTail@" + host_port + "/" + f.provider_db, "ssW0rdTail"},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[i];
        INFO("case " << i);
        const auto rc = source_dsn_config(f, c.dsn);
        const auto path = f.config_path() + ".bad-dsn-" + std::to_string(i) + ".yaml";
        write_run_config(path, rc);

        auto check = test::run_cli("check --config " + path);
        INFO("check:\n" << check.text);
        CHECK(check.rc == 1);
        CHECK_THAT(check.text, Catch::Contains("source.dsn: invalid connection string"));
        check_secret_absent(check.text, c.secret);

        test::Process run({AUTHSYNC_EXE, "run", "--config", path}, path + ".log");
        run.start();
        CHECK(run.wait(15s) == 1);
        INFO("run:\n" << run.log());
        CHECK_THAT(run.log(), Catch::Contains("source.dsn: invalid connection string"));
        check_secret_absent(run.log(), c.secret);
    }
}

TEST_CASE(
    "a dsn password with spaces, or repeated in libpq's reason, appears nowhere in check, "
    "the log or /status while authsync retries",
    "[security][integration]") {
    SyncFixture f;  // for its databases and slot name; its own run is not started
    const auto& provider = test::provider_cluster();
    const int closed_port = test::free_port();  // nothing listens there
    struct Case {
        std::string dsn, secret;
    };
    const std::vector<Case> cases = {
        {"host=127.0.0.1 port=" + std::to_string(closed_port) +
             " dbname=auth user=postgres password='correct horse battery'",
         "correct horse battery"},
        {"postgresql://postgres:Hunter2 secret@127.0.0.1:" + std::to_string(closed_port) + "/auth",
         "Hunter2 secret"},
        // The server names the role, which here is the password: `role "..." does not exist`.
        {provider.dsn(f.provider_db) + " user=Zq9wRoleSecret password=Zq9wRoleSecret",
         "Zq9wRoleSecret"},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[i];
        INFO("case " << i);
        const auto rc = source_dsn_config(f, c.dsn);
        const auto path = f.config_path() + ".retry-dsn-" + std::to_string(i) + ".yaml";
        write_run_config(path, rc);

        auto check = test::run_cli("check --config " + path);
        INFO("check:\n" << check.text);
        CHECK(check.rc == 1);
        CHECK_THAT(check.text, Catch::Contains("password=***"));
        check_secret_absent(check.text, c.secret);

        test::Process run({AUTHSYNC_EXE, "run", "--config", path}, path + ".log");
        LogOnFailure run_log{run};
        run.start();
        const std::string url = "http://127.0.0.1:" + std::to_string(rc.status_port);
        json s;
        CHECK(wait_until(
            [&] {
                s = status_of(url);
                return !last_error_of(s).empty() && s["counters"]["reconnects"] >= 2;
            },
            20s));
        INFO("last_error: " << last_error_of(s));
        CHECK_THAT(last_error_of(s), Catch::Contains("password=***"));
        check_secret_absent(last_error_of(s), c.secret);
        check_secret_absent(http_get(url + "/").body, c.secret);
        run.signal(SIGTERM);
        CHECK(run.wait(15s) == 0);
        INFO("run:\n" << run.log());
        CHECK_THAT(run.log(), Catch::Contains("reconnecting in"));
        check_secret_absent(run.log(), c.secret);
    }
}

TEST_CASE(
    "with sslmode=verify-full authsync talks TLS to both databases, and refuses a server "
    "its CA did not sign",
    "[security][integration]") {
    TlsMaterial tls;
    test::PgCluster cluster(
        "tls", {"ssl = on", "ssl_cert_file = '" + tls.server_crt + "'",
                "ssl_key_file = '" + tls.server_key + "'", "wal_sender_timeout = 10s"});
    // Only TLS connections over TCP from here on (the harness itself uses sslmode=prefer).
    {
        std::ofstream hba(cluster.data_dir() + "/pg_hba.conf", std::ios::trunc);
        hba << "local all all trust\n"
            << "hostssl all all 127.0.0.1/32 trust\n"
            << "hostssl replication all 127.0.0.1/32 trust\n";
    }
    cluster.connect().exec("SELECT pg_reload_conf()");
    const auto provider_db = cluster.create_database("auth");
    const auto target_db = cluster.create_database("app");
    cluster.connect(provider_db)
        .exec("CREATE TABLE public.users (id text PRIMARY KEY, name text, email text)");
    const auto plain = "host=127.0.0.1 port=" + std::to_string(cluster.port()) +
                       " user=postgres sslmode=disable dbname=" + target_db;
    CHECK_THROWS_WITH(pg::Connection::connect(plain), Catch::Contains("no pg_hba.conf entry"));

    auto dsn = [&](const std::string& db, const std::string& root_cert) {
        return "host=localhost port=" + std::to_string(cluster.port()) + " dbname=" + db +
               " user=postgres connect_timeout=10 sslmode=verify-full sslrootcert=" + root_cert;
    };
    RunConfig c;
    c.source_dsn = dsn(provider_db, tls.ca_crt);
    c.target_dsn = dsn(target_db, tls.ca_crt);
    c.slot = "authsync_tls";
    c.status_port = test::free_port();
    c.mappings = kUsersMapping;
    write_run_config(tls.dir + "/good.yaml", c);
    {
        test::Process good({AUTHSYNC_EXE, "run", "--config", tls.dir + "/good.yaml"},
                           tls.dir + "/good.log");
        LogOnFailure good_log{good};
        good.start();
        REQUIRE(wait_until([&] { return slot_active(cluster, c.slot); }, 30s));
        cluster.connect(provider_db)
            .exec(
                "INSERT INTO public.users (id, name, email) VALUES ('tls1', 'Tia', "
                "'tia@example.com')");
        REQUIRE(wait_until(
            [&] {
                return value(cluster.connect(target_db),
                             "SELECT email FROM neon_auth.users_sync WHERE id = 'tls1'") ==
                       "tia@example.com";
            },
            30s));
        // Every connection authsync holds (target, provider, walsender) is encrypted.
        auto r = cluster.connect().exec(
            "SELECT a.datname, a.backend_type, s.ssl FROM pg_stat_activity a "
            "JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.application_name = 'authsync' "
            "ORDER BY 1, 2");
        std::vector<std::string> seen;
        for (int i = 0; i < r.rows(); ++i) {
            seen.push_back(std::string(r.get(i, 0)) + "/" + std::string(r.get(i, 1)));
            CHECK(r.get(i, 2) == "t");
        }
        CHECK(std::count(seen.begin(), seen.end(), target_db + "/client backend") == 1);
        CHECK(std::count(seen.begin(), seen.end(), provider_db + "/client backend") == 1);
        CHECK(std::count(seen.begin(), seen.end(), provider_db + "/walsender") == 1);
        good.signal(SIGTERM);
        REQUIRE(good.wait(15s) == 0);
    }

    // The same server, but trusting another CA: authsync must not connect, and keeps trying.
    c.source_dsn = dsn(provider_db, tls.other_ca_crt);
    c.target_dsn = dsn(target_db, tls.other_ca_crt);
    c.slot = "authsync_tls_bad";
    c.status_port = test::free_port();
    write_run_config(tls.dir + "/bad.yaml", c);
    test::Process bad({AUTHSYNC_EXE, "run", "--config", tls.dir + "/bad.yaml"},
                      tls.dir + "/bad.log");
    LogOnFailure bad_log{bad};
    bad.start();
    json s;
    const std::string url = "http://127.0.0.1:" + std::to_string(c.status_port);
    CHECK(wait_until(
        [&] {
            s = status_of(url);
            return !last_error_of(s).empty() && s["counters"]["reconnects"] >= 2;
        },
        20s));
    INFO(bad.log());
    CHECK((s["state"] == "reconnecting" || s["state"] == "starting"));
    CHECK_THAT(last_error_of(s), Catch::Contains("certificate"));
    CHECK(bad.running());
    CHECK(cluster.connect()
              .exec("SELECT 1 FROM pg_stat_activity WHERE application_name = 'authsync'")
              .rows() == 0);
    CHECK(cluster.connect()
              .exec_params("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                           pg::params(c.slot))
              .rows() == 0);
    bad.signal(SIGTERM);
    CHECK(bad.wait(15s) == 0);
}

TEST_CASE("quoted identifiers and hostile values arrive exactly, by copy and by stream",
          "[security][integration]") {
    SyncFixture f;  // for its databases and slot name; its own run is not started
    auto p = f.provider();
    p.exec(R"(CREATE SCHEMA "Mixed Case";
              CREATE TABLE "Mixed Case"."Auth Users" (
                  "User ID" text PRIMARY KEY, "e""mail" text, "Display Name" text))");
    const std::string insert =
        R"(INSERT INTO "Mixed Case"."Auth Users" ("User ID", "e""mail", "Display Name") )"
        "VALUES ($1, $2, $3)";
    const std::string name = "Robert'); DROP TABLE neon_auth.users_sync; --";
    const std::string email = R"("quotes" and \\backslashes\\@example.com)";
    // Copied by the initial snapshot (COPY text format escapes tabs, newlines, backslashes).
    const std::string copied_id = "user 'one'";
    const std::string copied_email = email + "\t\n\u00fc";
    p.exec_params(insert, pg::params(copied_id, copied_email, name));

    RunConfig c;
    c.source_dsn = test::provider_cluster().dsn(f.provider_db);
    c.target_dsn = test::target_cluster().dsn(f.target_db);
    c.slot = f.slot();
    c.publication = R"(Auth "Pub" 1)";
    c.status_port = test::free_port();
    c.mappings =
        "  - source: '\"Mixed Case\".\"Auth Users\"'\n"
        "    key: \"User ID\"\n"
        "    fields:\n"
        "      id: \"User ID\"\n"
        "      display_name: \"Display Name\"\n"
        "      primary_email: 'e\"mail'\n";
    const auto path = f.config_path() + ".quoted.yaml";
    write_run_config(path, c);
    auto check = test::run_cli("check --config " + path);
    INFO(check.text);
    CHECK(check.rc == 0);

    test::Process run({AUTHSYNC_EXE, "run", "--config", path}, path + ".log");
    LogOnFailure run_log{run};
    run.start();
    REQUIRE(wait_until([&] { return slot_active(test::provider_cluster(), c.slot); }, 30s));
    const std::string streamed_id = "user \"two\"; --";
    p.exec_params(insert, pg::params(streamed_id, email, name));

    auto row = [&](const std::string& id) {
        auto r = f.target().exec_params(
            "SELECT raw_json->>'id', raw_json->>'display_name', raw_json->>'primary_email', "
            "name, email, deleted_at IS NOT NULL FROM neon_auth.users_sync WHERE id = $1",
            pg::params(id));
        std::vector<std::string> v;
        for (int i = 0; r.rows() == 1 && i < r.columns(); ++i) v.emplace_back(r.get(0, i));
        return v;
    };
    REQUIRE(wait_until([&] { return !row(streamed_id).empty(); }, 30s));
    CHECK(row(copied_id) ==
          std::vector<std::string>{copied_id, name, copied_email, name, copied_email, "f"});
    CHECK(row(streamed_id) == std::vector<std::string>{streamed_id, name, email, name, email, "f"});
    CHECK(f.target_value("SELECT to_regclass('neon_auth.users_sync') IS NOT NULL") == "t");
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "2");
    CHECK(f.target_value("SELECT string_agg(DISTINCT k, ',' ORDER BY k) FROM neon_auth.users_sync, "
                         "jsonb_object_keys(raw_json) k") == "display_name,id,primary_email");

    // Updates and deletes find the user by its quoted key column too.
    const std::string renamed = R"(O'Brien "Jr." \ ;)";
    p.exec_params(
        R"(UPDATE "Mixed Case"."Auth Users" SET "Display Name" = $2 WHERE "User ID" = $1)",
        pg::params(streamed_id, renamed));
    p.exec_params(R"(DELETE FROM "Mixed Case"."Auth Users" WHERE "User ID" = $1)",
                  pg::params(copied_id));
    REQUIRE(
        wait_until([&] { return row(copied_id).size() == 6 && row(copied_id)[5] == "t"; }, 30s));
    CHECK(row(streamed_id).at(1) == renamed);
    run.signal(SIGTERM);
    CHECK(run.wait(15s) == 0);
}

TEST_CASE("a terminated target backend is followed by a reconnect", "[security][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('tb1', 'before')");
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "1"; }, 30s));
    auto backend = [&] {
        return value(test::target_cluster().connect(),
                     "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE datname = $1 "
                     "AND application_name = 'authsync' AND backend_type = 'client backend'",
                     pg::params(f.target_db));
    };
    const auto first = backend();
    REQUIRE(first != "<null>");
    REQUIRE(first.find(',') == std::string::npos);  // exactly one
    CHECK(value(test::target_cluster().connect(), "SELECT pg_terminate_backend($1::int)",
                pg::params(first)) == "t");
    p.exec("INSERT INTO public.users (id, name) VALUES ('tb2', 'after')");
    REQUIRE(wait_until(
        [&] {
            return f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'tb2'") ==
                   "after";
        },
        30s));
    const auto second = backend();
    CHECK(second != "<null>");
    CHECK(second != first);
    CHECK_THAT(f.process().log(), Catch::Contains("reconnecting"));
    CHECK(f.stop() == 0);
}

TEST_CASE("an unreachable provider shows as reconnecting, and the stream resumes when it is back",
          "[security][integration]") {
    test::PgCluster provider("outage", {"wal_sender_timeout = 10s"});  // outlives the fixture
    test::SyncOptions options;
    options.provider = &provider;
    options.heartbeat_interval = "1s";
    SyncFixture f(options);
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('o1', 'before')");
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "1"; }, 30s));

    provider.stop("fast");
    json s;
    CHECK(wait_until(
        [&] {
            s = status_of(f.status_url());
            return s.is_object() && s["state"] == "reconnecting" && !last_error_of(s).empty();
        },
        10s));
    // Down for a while: several attempts, each failing, none fatal.
    CHECK(
        wait_until([&] { return status_of(f.status_url())["counters"]["reconnects"] >= 3; }, 15s));
    CHECK(f.process().running());

    provider.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('o2', 'after')");
    REQUIRE(wait_until(
        [&] {
            return f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'o2'") ==
                   "after";
        },
        60s));
    CHECK(wait_until(
        [&] {
            s = status_of(f.status_url());
            return s.is_object() && s["state"] == "streaming" && s["lag_seconds"] == 0 &&
                   s["lag_bytes"] == 0;
        },
        30s));
    INFO(s.dump());
    CHECK(f.stop() == 0);
}

TEST_CASE("a slot dropped under a running instance stops it with exit code 1 and says to resync",
          "[security][integration]") {
    SyncFixture f;
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('d1', 'D')");
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "1"; }, 30s));
    REQUIRE(f.target_value("SELECT count(*) FROM authsync.checkpoint") == "1");
    // Terminate the walsender and drop the slot while authsync is between reconnects.
    auto admin = test::provider_cluster().connect();
    bool dropped = wait_until(
        [&] {
            admin.exec_params(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = $1 AND active_pid IS NOT NULL",
                pg::params(f.slot()));
            try {
                admin.exec_params("SELECT pg_drop_replication_slot($1)", pg::params(f.slot()));
                return true;
            } catch (const pg::PgError& e) {
                if (e.sqlstate() != "55006") throw;  // still active: try again
                return false;
            }
        },
        20s);
    REQUIRE(dropped);
    CHECK(f.process().wait(30s) == 1);
    auto log = f.process().log();
    INFO(log);
    CHECK_THAT(log, Catch::Contains("slot " + f.slot() + " does not exist"));
    CHECK_THAT(log, Catch::Contains("run `authsync resync`"));
}

TEST_CASE("a blocked target holds authsync back with bounded memory until it is released",
          "[security][integration]") {
    test::SyncOptions options;
    options.heartbeat_interval = "0s";  // only our transactions count as applied
    SyncFixture f(options);
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('seed', 'S')");
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "1"; }, 30s));

    const auto applied_before = status_of(f.status_url())["counters"]["txns_applied"];
    REQUIRE(applied_before >= 1);
    auto blocker = f.target();
    blocker.exec("BEGIN; LOCK TABLE neon_auth.users_sync IN ACCESS EXCLUSIVE MODE");
    for (int t = 0; t < 30; ++t) {
        const auto from = std::to_string(t * 10'000 + 1);
        const auto to = std::to_string((t + 1) * 10'000);
        p.exec(
            "INSERT INTO public.users (id, name, email) SELECT 'bp' || i, 'User ' || i, "
            "'user' || i || '@example.com' FROM generate_series(" +
            from + ", " + to + ") i");
    }
    long blocked_peak = 0;
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < until) {
        blocked_peak = std::max(blocked_peak, f.process().peak_rss_kb());
        std::this_thread::sleep_for(100ms);
    }
    auto s = status_of(f.status_url());
    REQUIRE(s.is_object());
    CHECK(s["lag_seconds"].get<double>() > 0);
    CHECK(s["lag_bytes"].get<std::uint64_t>() > 0);
    // Nothing got through (reading the table itself would wait for the lock too).
    CHECK(s["counters"]["txns_applied"] == applied_before);
    WARN("authsync peak RSS while blocked behind 300,000 rows: " << blocked_peak << " kB");
    CHECK(blocked_peak > 0);
    if (test::kMemoryBoundsChecked) CHECK(blocked_peak < 64 * 1024);

    blocker.exec("ROLLBACK");
    long peak = blocked_peak;
    CHECK(wait_until(
        [&] {
            peak = std::max(peak, f.process().peak_rss_kb());
            return f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "300001";
        },
        180s));
    if (test::kMemoryBoundsChecked) CHECK(peak < 64 * 1024);
    CHECK(f.target_value("SELECT email FROM neon_auth.users_sync WHERE id = 'bp300000'") ==
          "user300000@example.com");
    CHECK(f.stop() == 0);
}

TEST_CASE("least-privilege roles as in docs/SECURITY.md sync users without reading secrets",
          "[security][integration]") {
    SyncFixture f;  // for its databases and slot name; its own run is not started
    const auto replicator = f.slot() + "_repl";
    const auto writer = f.slot() + "_app";
    // Provider: REPLICATION, SELECT on the mapped columns only, a publication whose column
    // list leaves the secret out (created by the table's owner).
    auto p = f.provider();
    p.exec(
        "ALTER TABLE public.users ADD COLUMN password_hash text;"
        "CREATE ROLE " +
        replicator +
        " LOGIN REPLICATION;"
        "GRANT SELECT (id, name, email) ON public.users TO " +
        replicator +
        ";"
        "CREATE PUBLICATION authsync FOR TABLE public.users (id, name, email)");
    // Target: owns its two schemas, and nothing on the database.
    f.target().exec("CREATE ROLE " + writer +
                    " LOGIN;"
                    "CREATE SCHEMA neon_auth AUTHORIZATION " +
                    writer +
                    ";"
                    "CREATE SCHEMA authsync AUTHORIZATION " +
                    writer);
    p.exec(
        "INSERT INTO public.users (id, name, email, password_hash) "
        "VALUES ('lp1', 'Copied', 'copied@example.com', 'secret-hash-sentinel')");

    RunConfig c;
    c.source_dsn = test::provider_cluster().dsn(f.provider_db) + " user=" + replicator;
    c.target_dsn = test::target_cluster().dsn(f.target_db) + " user=" + writer;
    c.slot = f.slot();
    c.status_port = test::free_port();
    c.mappings = kUsersMapping;
    const auto path = f.config_path() + ".least.yaml";
    write_run_config(path, c);
    CHECK(value(f.provider(),
                "SELECT has_column_privilege($1, 'public.users', 'password_hash', "
                "'SELECT')",
                pg::params(replicator)) == "f");
    auto check = test::run_cli("check --config " + path);
    {
        INFO(check.text);
        CHECK(check.rc == 0);
    }

    test::Process run({AUTHSYNC_EXE, "run", "--config", path}, path + ".log");
    LogOnFailure run_log{run};
    run.start();
    auto row_email = [&](const std::string& id) {
        try {
            return value(f.target(), "SELECT email FROM neon_auth.users_sync WHERE id = $1",
                         pg::params(id));
        } catch (const pg::PgError& e) {
            if (e.sqlstate() != "42P01") throw;
            return std::string("<no users_sync yet>");
        }
    };
    REQUIRE(wait_until([&] { return row_email("lp1") == "copied@example.com" || !run.running(); },
                       30s));
    REQUIRE(run.running());
    CHECK(row_email("lp1") == "copied@example.com");
    p.exec(
        "INSERT INTO public.users (id, name, email, password_hash) "
        "VALUES ('lp2', 'Streamed', 'streamed@example.com', 'secret-hash-sentinel')");
    p.exec("UPDATE public.users SET name = 'Copied 2', password_hash = 'x' WHERE id = 'lp1'");
    REQUIRE(wait_until([&] { return row_email("lp2") == "streamed@example.com"; }, 30s));
    REQUIRE(wait_until(
        [&] {
            return value(f.target(), "SELECT name FROM neon_auth.users_sync WHERE id = 'lp1'") ==
                   "Copied 2";
        },
        30s));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync "
                         "WHERE raw_json::text LIKE '%secret-hash-sentinel%'") == "0");
    // Heartbeats need no grant in PostgreSQL 15 (EXECUTE on pg_logical_emit_message is PUBLIC).
    const std::string url = "http://127.0.0.1:" + std::to_string(c.status_port);
    CHECK(wait_until([&] { return !status_of(url)["e2e_latency_ms"].is_null(); }, 15s));
    CHECK_THAT(run.log(), !Catch::Contains("heartbeats disabled"));
    run.signal(SIGTERM);
    CHECK(run.wait(15s) == 0);

    // teardown with the same roles: the slot and the checkpoint go; the publication, which
    // the table's owner made, stays (and teardown says so) without failing the rest.
    auto teardown = test::run_cli("teardown --config " + path);
    INFO(teardown.text);
    CHECK(teardown.rc == 0);
    CHECK_THAT(teardown.text, Catch::Contains("publication authsync left in place"));
    CHECK(value(f.provider(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                pg::params(f.slot())) == "0");
    CHECK(value(f.target(), "SELECT count(*) FROM authsync.checkpoint WHERE slot = $1",
                pg::params(f.slot())) == "0");
    CHECK(f.provider_value("SELECT count(*) FROM pg_publication WHERE pubname = 'authsync'") ==
          "1");
}

TEST_CASE(
    "a publication authsync creates for a table mapping lists only the columns it reads, and "
    "check warns about one that sends more",
    "[security][integration]") {
    SyncFixture f;  // its mapping reads id, name, email, created_at, metadata, active, score,
                    // bio and version
    auto p = f.provider();
    p.exec("ALTER TABLE public.users ADD COLUMN password_hash text, ADD COLUMN totp_secret text");
    f.start();
    const std::string published_sql =
        "SELECT array_to_string(attnames, ',') FROM pg_publication_tables "
        "WHERE pubname = 'authsync' AND schemaname = 'public' AND tablename = 'users'";
    CHECK(f.provider_value(published_sql) ==
          "id,name,email,created_at,metadata,active,score,bio,version");

    // Inserts, updates and deletes still arrive.
    p.exec(
        "INSERT INTO public.users (id, name, password_hash, totp_secret) "
        "VALUES ('cl1', 'Col', 'hash-sentinel', 'totp-sentinel')");
    REQUIRE(wait_until(
        [&] {
            return f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'cl1'") ==
                   "Col";
        },
        30s));
    p.exec("UPDATE public.users SET name = 'Col 2', password_hash = 'x' WHERE id = 'cl1'");
    REQUIRE(wait_until(
        [&] {
            return f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'cl1'") ==
                   "Col 2";
        },
        30s));
    p.exec("DELETE FROM public.users WHERE id = 'cl1'");
    REQUIRE(wait_until(
        [&] {
            return f.target_value(
                       "SELECT deleted_at IS NOT NULL FROM neon_auth.users_sync "
                       "WHERE id = 'cl1'") == "t";
        },
        30s));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync "
                         "WHERE raw_json::text LIKE '%sentinel%'") == "0");
    auto check = test::run_cli("check --config " + f.config_path());
    {
        INFO(check.text);
        CHECK(check.rc == 0);
        CHECK_THAT(check.text, !Catch::Contains("no mapping reads"));
    }
    CHECK(f.stop() == 0);

    // A publication made without a column list sends the secrets: check says so.
    p.exec("DROP PUBLICATION authsync; CREATE PUBLICATION authsync FOR TABLE public.users");
    check = test::run_cli("check --config " + f.config_path());
    INFO(check.text);
    CHECK(check.rc == 0);  // a warning: the sync works, it just receives more than it needs
    CHECK_THAT(check.text,
               Catch::Contains("warning: source: publication \"authsync\" sends column(s) "
                               "password_hash, totp_secret of \"public\".\"users\" that no "
                               "mapping reads"));
    CHECK_THAT(check.text,
               Catch::Contains("ALTER PUBLICATION \"authsync\" SET TABLE \"public\".\"users\" "
                               "(\"id\", \"name\", \"email\", \"created_at\", \"metadata\", "
                               "\"active\", \"score\", \"bio\", \"version\")"));
}
