#include "sync_fixture.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace authsync::test {

PgCluster& provider_cluster() {
    static PgCluster cluster("provider", {"wal_sender_timeout = 10s"});
    return cluster;
}

PgCluster& target_cluster() {
    static PgCluster cluster("target");
    return cluster;
}

namespace {

int next_id() {
    static int n = 0;
    return ++n;
}

}  // namespace

CliOutput run_cli(const std::string& args) {
    auto out = run_shell_output(std::string(AUTHSYNC_EXE) + " " + args + " 2>&1; echo \"rc=$?\"");
    auto pos = out.rfind("rc=");
    return {std::stoi(out.substr(pos + 3)), out.substr(0, pos)};
}

SlowTargetWalWriter::SlowTargetWalWriter() {
    auto c = target_cluster().connect();
    // Nothing else flushes the WAL meanwhile either: no autovacuum (after the large tests it
    // writes plenty), and no background writer (writing a dirty page flushes the WAL up to it);
    // what earlier tests left dirty is written now.
    c.exec("ALTER SYSTEM SET wal_writer_delay = '10s'");
    c.exec("ALTER SYSTEM SET autovacuum = off");
    c.exec("ALTER SYSTEM SET bgwriter_lru_maxpages = 0");
    c.exec("SELECT pg_reload_conf()");
    c.exec("CHECKPOINT");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // taken after its nap
}

SlowTargetWalWriter::~SlowTargetWalWriter() {
    try {
        auto c = target_cluster().connect();
        c.exec("ALTER SYSTEM RESET wal_writer_delay");
        c.exec("ALTER SYSTEM RESET autovacuum");
        c.exec("ALTER SYSTEM RESET bgwriter_lru_maxpages");
        c.exec("SELECT pg_reload_conf()");
    } catch (const std::exception&) {
        // Tests work with either delay; the cluster goes at the end of the run.
    }
}

SyncFixture::SyncFixture(SyncOptions options)
    : options_(std::move(options)),
      cluster_(options_.provider ? options_.provider : &provider_cluster()) {
    const int n = next_id();
    slot_ = "authsync_t" + std::to_string(n);
    provider_db = cluster_->create_database("auth", options_.provider_db_options);
    target_db = target_cluster().create_database("app");
    char tmpl[] = "/tmp/authsync-sync-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    config_path_ = dir_ + "/authsync.yaml";
    status_port_ = free_port();

    if (!options_.provider_ddl.empty()) {
        provider().exec(options_.provider_ddl);
    } else {
        provider().exec(R"(
            CREATE TABLE public.users (
                id text PRIMARY KEY,
                name text,
                email text,
                created_at timestamptz DEFAULT '2024-01-02 03:04:05.678+00',
                metadata jsonb,
                active boolean,
                score numeric,
                bio text,
                version int NOT NULL DEFAULT 1);
            ALTER TABLE public.users ALTER COLUMN bio SET STORAGE EXTERNAL;
            CREATE TABLE public.unrelated (id serial PRIMARY KEY, note text);
        )");
    }

    std::ofstream f(config_path_);
    f << "source:\n"
      << "  dsn: \"" << cluster_->dsn(provider_db) << options_.dsn_suffix << "\"\n"
      << "  slot: " << slot_ << "\n"
      << "  publication: authsync\n"
      << "  status_interval: " << options_.status_interval << "\n"
      << "  heartbeat_interval: " << options_.heartbeat_interval << "\n"
      << "  snapshot: " << options_.snapshot << "\n";
    if (options_.targets_yaml.empty()) {
        f << "target:\n"
          << "  dsn: \"" << target_cluster().dsn(target_db) << options_.dsn_suffix << "\"\n";
    }
    f << "status:\n"
      << "  listen: \"127.0.0.1:" << status_port_ << "\"\n"
      << "  max_ready_lag_seconds: " << options_.max_ready_lag_seconds << "\n"
      << (options_.status_token.empty() ? std::string()
                                        : "  token: \"" + options_.status_token + "\"\n")
      << options_.status_yaml << "reconnect:\n"
      << "  initial_backoff: 100ms\n"
      << "  max_backoff: 1s\n"
      << options_.extra_yaml << "\n";
    if (!options_.targets_yaml.empty()) {
        f << "targets:\n" << options_.targets_yaml;
    } else if (!options_.mappings_yaml.empty()) {
        f << "mappings:\n" << options_.mappings_yaml;
    } else {
        f << "mappings:\n"
          << "  - source: public.users\n"
          << "    key: id\n"
          << "    on_delete: " << options_.on_delete << "\n"
          << "    fields:\n"
          << "      id: id\n"
          << "      display_name: name\n"
          << "      primary_email: email\n"
          << "      signed_up_at_millis: {column: created_at, as: epoch_millis}\n"
          << "      server_metadata: metadata\n"
          << "      active: active\n"
          << "      score: score\n"
          << "      bio: bio\n"
          << "      version: version\n";
    }
    f.close();
    std::vector<std::string> argv{AUTHSYNC_EXE,   "--log-level",       options_.log_level,
                                  "--log-format", options_.log_format, "run",
                                  "--config",     config_path_};
    if (options_.open_files_limit > 0) {
        // The shell lowers the limit and execs authsync in its place (same pid).
        argv.insert(argv.begin(), {"/bin/sh", "-c",
                                   "ulimit -n " + std::to_string(options_.open_files_limit) +
                                       " && exec \"$0\" \"$@\""});
    }
    process_ = std::make_unique<Process>(std::move(argv), dir_ + "/authsync.log");
}

SyncFixture::~SyncFixture() {
    process_->kill9();
    // A failed REQUIRE unwinds through here: show what authsync said.
    if (std::uncaught_exceptions() > 0 || std::getenv("AUTHSYNC_TEST_VERBOSE")) {
        std::fprintf(stderr, "---- authsync log (%s) ----\n%s\n----\n", slot_.c_str(),
                     process_->log().c_str());
    }
    try {
        // Drop the slot so that it holds no WAL for the rest of the run.
        cluster_->connect().exec_params(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE "
            "slot_name = $1 AND NOT active",
            {slot_});
    } catch (const std::exception&) {
        // Best effort: the cluster is torn down at the end of the run anyway.
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

pg::Connection SyncFixture::provider() const {
    return cluster_->connect(provider_db);
}
pg::Connection SyncFixture::target() const {
    return target_cluster().connect(target_db);
}

std::string SyncFixture::target_value(const std::string& sql) const {
    auto r = target().exec(sql);
    if (r.rows() == 0 || r.is_null(0, 0)) return "<null>";
    return std::string(r.get(0, 0));
}

bool row_exists(const SyncFixture& f, const std::string& id, const std::string& table) {
    return f.target().exec_params("SELECT 1 FROM " + table + " WHERE id = $1", {id}).rows() == 1;
}

std::string SyncFixture::provider_value(const std::string& sql) const {
    auto r = provider().exec(sql);
    if (r.rows() == 0 || r.is_null(0, 0)) return "<null>";
    return std::string(r.get(0, 0));
}

nlohmann::json SyncFixture::status() const {
    auto j = nlohmann::json::parse(run_shell_output("curl -s -m 5 " + status_url() + "/status"),
                                   nullptr, false);
    return j.is_object() ? j : nlohmann::json::object();
}

void SyncFixture::start() {
    process_->start();
    wait_streaming();
}

void SyncFixture::wait_streaming() {
    // Ready when the slot is streaming to it (the target schema exists by then). Not just
    // active: the slot is active during an initial copy too, before START_REPLICATION.
    bool streaming = wait_until(
        [&] {
            auto r = cluster_->connect().exec_params(
                "SELECT r.state FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = "
                "s.active_pid WHERE s.slot_name = $1",
                pg::params(slot_));
            return r.rows() == 1 && (r.get(0, 0) == "streaming" || r.get(0, 0) == "catchup");
        },
        std::chrono::seconds(120));  // an initial copy comes first (slow under sanitizers)
    if (!streaming) {
        throw std::runtime_error("authsync did not start streaming:\n" + process_->log());
    }
}

int SyncFixture::stop(std::chrono::milliseconds timeout) {
    process_->signal(SIGTERM);
    return process_->wait(timeout);
}

bool SyncFixture::wait_caught_up(std::chrono::milliseconds timeout) {
    auto lsn = provider_value("SELECT pg_current_wal_lsn()");
    return wait_until(
        [&] {
            auto r = cluster_->connect().exec_params(
                "SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE "
                "slot_name = $1",
                {slot_, lsn});
            return r.rows() == 1 && r.get(0, 0) == "t";
        },
        timeout);
}

}  // namespace authsync::test
