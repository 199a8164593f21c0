// A provider and a target PostgreSQL (shared by the tests of one run), a fresh database pair
// and slot per test, and `authsync run` as a child process with a config written for them.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "pg_cluster.hpp"
#include "process.hpp"

namespace authsync::test {

PgCluster& provider_cluster();
PgCluster& target_cluster();

struct SyncOptions {
    std::string on_delete = "soft";
    std::string extra_yaml;  // appended at the top level (e.g. an apply: section)
    std::string status_interval = "200ms";
    std::string heartbeat_interval = "10s";
    std::string status_token;  // empty: no token
    std::string status_yaml;   // more keys of the status: section, indented by two
    int open_files_limit = 0;  // > 0: authsync runs under `ulimit -n` this
    int max_ready_lag_seconds = 60;
    PgCluster* provider = nullptr;    // default: the shared provider_cluster()
    std::string provider_db_options;  // CREATE DATABASE options (e.g. an encoding)
    std::string snapshot = "initial";
    std::string dsn_suffix;           // appended to both DSNs (e.g. " password=...")
    std::string log_level = "debug";  // authsync's --log-level
    std::string log_format = "text";  // authsync's --log-format
    // Replace the default provider tables (public.users, public.unrelated) and mappings.
    std::string provider_ddl;
    std::string mappings_yaml;  // the items under "mappings:", indented by two spaces
    // Not empty: the items under "targets:" (fan-out), written instead of target: and
    // mappings: (the fixture's own target database is then unused).
    std::string targets_yaml;
};

// What an authsync command printed (stdout and stderr together) and its exit code.
struct CliOutput {
    int rc = -1;
    std::string text;
};
// Runs `authsync ARGS` to completion.
CliOutput run_cli(const std::string& args);

// Holds the target's asynchronous commits unflushed for up to 10 s (wal_writer_delay) while it
// lives: a target crash then loses what authsync committed there.
struct SlowTargetWalWriter {
    SlowTargetWalWriter();
    ~SlowTargetWalWriter();
};

class SyncFixture {
public:
    explicit SyncFixture(SyncOptions options = {});
    ~SyncFixture();

    pg::Connection provider() const;
    pg::Connection target() const;
    // First value of the first row, or "<null>".
    std::string target_value(const std::string& sql) const;
    std::string provider_value(const std::string& sql) const;

    // Starts authsync and waits until the slot streams to it.
    void start();
    // Waits until the slot streams to the running authsync (120 s; an initial copy may come
    // first): past its start-up, so that it handles SIGTERM. Throws with its log otherwise.
    void wait_streaming();
    // Starts authsync without waiting (for runs that are expected to fail).
    void start_unchecked() { process_->start(); }
    // SIGTERM; returns the exit code (or -1 after the timeout).
    int stop(std::chrono::milliseconds timeout = std::chrono::seconds(15));
    void kill9() { process_->kill9(); }
    Process& process() { return *process_; }
    // Waits until the slot's confirmed_flush_lsn reaches the provider's current WAL position.
    bool wait_caught_up(std::chrono::milliseconds timeout = std::chrono::seconds(30));

    const std::string& slot() const { return slot_; }
    PgCluster& provider_cluster_of() const { return *cluster_; }
    // http://127.0.0.1:<port> of this instance's status endpoint.
    std::string status_url() const { return "http://127.0.0.1:" + std::to_string(status_port_); }
    // The /status document, or an empty object while the endpoint does not answer.
    nlohmann::json status() const;
    int status_port() const { return status_port_; }
    const std::string& config_path() const { return config_path_; }
    std::string provider_db, target_db;

private:
    SyncOptions options_;
    PgCluster* cluster_;
    std::string slot_;
    int status_port_ = 0;
    std::string dir_;
    std::string config_path_;
    std::unique_ptr<Process> process_;
};

// Whether the target's `table` holds the row with this id.
bool row_exists(const SyncFixture& f, const std::string& id,
                const std::string& table = "neon_auth.users_sync");

}  // namespace authsync::test
