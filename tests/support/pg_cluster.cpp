#include "pg_cluster.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <utility>

namespace authsync::test {

namespace {

bool is_root() {
    return geteuid() == 0;
}

std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

}  // namespace

std::string pg_bindir() {
    if (const char* env = std::getenv("AUTHSYNC_PG_BINDIR")) return env;
    return "/usr/lib/postgresql/15/bin";
}

namespace {

// The kernel's range for ephemeral ports: outgoing connections and bind() to port 0 take
// their local port from it.
std::pair<int, int> ephemeral_range() {
    int low = 32768, high = 60999;  // Linux's defaults, if the file cannot be read
    std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
    in >> low >> high;
    return {low, high};
}

// Binds a TCP socket to 127.0.0.1:`port` (0: the kernel picks one from the ephemeral range)
// with SO_REUSEADDR, as the servers bind; returns the port bound, or 0 when it is taken. The
// socket is closed before returning.
int bind_loopback(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("socket() failed");
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    int bound = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        socklen_t len = sizeof addr;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
        bound = ntohs(addr.sin_port);
    }
    ::close(fd);
    return bound;
}

}  // namespace

// Outside the ephemeral range, so that none of the many connections a test makes can take the
// port between this answer and the server's bind, or while a test has the server stopped.
int free_port() {
    static std::mt19937 rng{std::random_device{}()};
    const auto [low, high] = ephemeral_range();
    int from = 10000, to = low - 1;
    if (to - from < 1000) {
        from = high + 1;
        to = 65535;
    }
    if (to - from >= 1000) {
        std::uniform_int_distribution<int> pick(from, to);
        for (int attempt = 0; attempt < 1000; ++attempt) {
            const int port = pick(rng);
            if (bind_loopback(port) == port) return port;
        }
    }
    // The ephemeral range leaves no room beside it: the kernel's choice.
    if (const int port = bind_loopback(0); port != 0) return port;
    throw std::runtime_error("no free loopback port");
}

int run_shell(const std::string& command) {
    int status = std::system(command.c_str());
    if (status == -1) throw std::runtime_error("could not run: " + command);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string run_shell_output(const std::string& command) {
    std::string out;
    FILE* p = ::popen(command.c_str(), "r");
    if (!p) throw std::runtime_error("could not run: " + command);
    std::array<char, 4096> buf;
    std::size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    int status = ::pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error("command failed: " + command + "\n" + out);
    }
    return out;
}

PgCluster::PgCluster(std::string name, std::vector<std::string> settings) : name_(std::move(name)) {
    char tmpl[] = "/tmp/authsync-test-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    base_dir_ = tmpl;
    data_dir_ = base_dir_ + "/data";
    log_file_ = base_dir_ + "/server.log";
    if (is_root()) run_shell("chown postgres: " + shell_quote(base_dir_));
    run_as_server_user(pg_bindir() + "/initdb -D " + shell_quote(data_dir_) +
                       " -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >" +
                       shell_quote(base_dir_ + "/initdb.log") + " 2>&1");
    port_ = free_port();
    std::ofstream conf(data_dir_ + "/postgresql.conf", std::ios::app);
    conf << "\n# authsync test harness\n"
         << "listen_addresses = '127.0.0.1'\n"
         << "port = " << port_ << "\n"
         << "unix_socket_directories = '" << base_dir_ << "'\n"
         << "wal_level = logical\n"
         << "max_replication_slots = 20\n"
         << "max_wal_senders = 20\n"
         << "fsync = off\n"
         << "full_page_writes = off\n"
         << "shared_buffers = 64MB\n"
         << "max_connections = 60\n"
         << "log_min_messages = warning\n"
         << "log_line_prefix = '%m [%p] %a '\n";
    for (const auto& s : settings) conf << s << "\n";
    conf.close();
    std::ofstream hba(data_dir_ + "/pg_hba.conf", std::ios::app);
    hba << "host replication all 127.0.0.1/32 trust\n";
    hba.close();
    // A port that free_port() found free can be taken by another socket before the server
    // binds it: the start is tried again on another port (a later `port` line wins).
    for (int attempt = 1;; ++attempt) {
        try {
            start();
            return;
        } catch (const std::runtime_error&) {
            if (attempt == 3 || log_tail().find("Address already in use") == std::string::npos) {
                throw;
            }
            port_ = free_port();
            std::ofstream(data_dir_ + "/postgresql.conf", std::ios::app)
                << "port = " << port_ << "\n";
        }
    }
}

PgCluster::~PgCluster() {
    try {
        if (running_) stop("immediate");
    } catch (const std::exception&) {
        // The destructor must not throw; the temp dir is removed below regardless.
    }
    std::error_code ec;
    std::filesystem::remove_all(base_dir_, ec);
}

void PgCluster::run_as_server_user(const std::string& command) const {
    std::string full = is_root() ? "runuser -u postgres -- sh -c " + shell_quote(command)
                                 : "sh -c " + shell_quote(command);
    if (run_shell(full) != 0) {
        throw std::runtime_error("command failed (" + name_ + "): " + command + "\n" + log_tail());
    }
}

void PgCluster::start() {
    run_as_server_user(pg_bindir() + "/pg_ctl -D " + shell_quote(data_dir_) + " -l " +
                       shell_quote(log_file_) + " -w -t 60 start >/dev/null");
    running_ = true;
}

void PgCluster::stop(const std::string& mode) {
    run_as_server_user(pg_bindir() + "/pg_ctl -D " + shell_quote(data_dir_) + " -m " + mode +
                       " -w -t 60 stop >/dev/null");
    running_ = false;
}

void PgCluster::restart(const std::string& mode) {
    stop(mode);
    start();
}

std::string PgCluster::dsn(const std::string& dbname) const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + dbname +
           " user=postgres connect_timeout=10";
}

pg::Connection PgCluster::connect(const std::string& dbname) const {
    return pg::Connection::connect(dsn(dbname));
}

std::string PgCluster::create_database(const std::string& prefix, const std::string& options) {
    std::string name = prefix + "_" + std::to_string(++db_counter_);
    connect().exec("CREATE DATABASE " + quote_identifier(name) +
                   (options.empty() ? "" : " " + options));
    return name;
}

std::string PgCluster::log_tail(int lines) const {
    try {
        return run_shell_output("tail -n " + std::to_string(lines) + " " + shell_quote(log_file_) +
                                " 2>/dev/null || true");
    } catch (const std::exception&) {
        return {};
    }
}

}  // namespace authsync::test
