// PgCluster: a real PostgreSQL 15 server for a test, in a temp dir on a free loopback port.
//
// initdb with trust authentication, wal_level=logical, listening on 127.0.0.1 only; run as the
// `postgres` OS user when the test process is root (PostgreSQL refuses root). Stopped and
// removed in the destructor. fsync is off: the tests crash processes, not the machine.
#pragma once

#include <string>
#include <vector>

#include "authsync/pg/connection.hpp"

namespace authsync::test {

class PgCluster {
public:
    // `settings` are extra postgresql.conf lines.
    explicit PgCluster(std::string name, std::vector<std::string> settings = {});
    ~PgCluster();
    PgCluster(const PgCluster&) = delete;
    PgCluster& operator=(const PgCluster&) = delete;

    void start();
    // mode: smart, fast or immediate.
    void stop(const std::string& mode = "fast");
    void restart(const std::string& mode = "fast");
    bool running() const { return running_; }

    int port() const { return port_; }
    const std::string& data_dir() const { return data_dir_; }
    std::string dsn(const std::string& dbname = "postgres") const;
    pg::Connection connect(const std::string& dbname = "postgres") const;
    // A fresh database with a unique name; returns the name. `options` follow CREATE DATABASE
    // (e.g. "ENCODING 'LATIN1' LOCALE 'C' TEMPLATE template0").
    std::string create_database(const std::string& prefix, const std::string& options = {});
    std::string log_tail(int lines = 40) const;

private:
    void run_as_server_user(const std::string& command) const;

    std::string name_;
    std::string base_dir_;
    std::string data_dir_;
    std::string log_file_;
    int port_ = 0;
    bool running_ = false;
    int db_counter_ = 0;
};

// Where the PostgreSQL 15 binaries are (pg_config --bindir of the server package).
std::string pg_bindir();
// A TCP port on 127.0.0.1 that was free a moment ago, outside the kernel's ephemeral range (no
// outgoing connection can take it while a server is down).
int free_port();
// Runs a shell command, returns its exit status; throws when it cannot run.
int run_shell(const std::string& command);
// Runs a shell command and returns its stdout; throws when it exits non-zero.
std::string run_shell_output(const std::string& command);

}  // namespace authsync::test
