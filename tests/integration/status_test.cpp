// The status endpoint of a running authsync, read with a real HTTP client (curl).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using nlohmann::json;
using test::SyncFixture;
using test::SyncOptions;
using test::wait_until;

namespace {

struct HttpResult {
    int code = 0;
    std::string body;
};

HttpResult http_get(const std::string& url, const std::string& token = "") {
    std::string cmd = "curl -s -m 5 -w '\\n%{http_code}' ";
    if (!token.empty()) cmd += "-H 'Authorization: Bearer " + token + "' ";
    auto out = test::run_shell_output(cmd + "'" + url + "' || true");
    auto nl = out.rfind('\n');
    if (nl == std::string::npos) return {0, out};
    return {std::atoi(out.substr(nl + 1).c_str()), out.substr(0, nl)};
}

json status_json(SyncFixture& f) {
    auto r = http_get(f.status_url() + "/status");
    REQUIRE(r.code == 200);
    return json::parse(r.body);
}

double metric(const std::string& text, const std::string& name) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    return -1;
}

// Idle TCP connections to a port on 127.0.0.1, held open from this process: what a client that
// opens connections and never sends a request does. Bounded: `count` at once, and top_up()
// re-opens at most `per_round` of those the server closed. Close-on-exec, so that the children
// this test starts (authsync, curl) do not inherit them.
class ConnectionFlood {
public:
    ConnectionFlood(int port, int count) : port_(port), count_(count) {
        // Thousands of descriptors: raise this process's soft limit to its hard limit.
        rlimit lim{};
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
        lim.rlim_cur = lim.rlim_max;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &lim) == 0);
        REQUIRE(lim.rlim_cur >= static_cast<rlim_t>(count) + 256);
        while (static_cast<int>(fds_.size()) < count_) fds_.push_back(open_one());
        REQUIRE(std::count(fds_.begin(), fds_.end(), -1) == 0);
    }
    ~ConnectionFlood() { close_all(); }
    ConnectionFlood(const ConnectionFlood&) = delete;
    ConnectionFlood& operator=(const ConnectionFlood&) = delete;

    // Re-opens connections that the server closed (at most per_round); returns how many.
    int top_up(int per_round) {
        // No Catch2 assertions here: this runs on the keep_up() thread.
        std::vector<pollfd> polled;
        for (int fd : fds_) polled.push_back({fd, POLLIN, 0});  // -1 is skipped by poll
        ::poll(polled.data(), polled.size(), 0);
        int reopened = 0;
        for (std::size_t i = 0; i < polled.size() && reopened < per_round; ++i) {
            if (fds_[i] >= 0 && !(polled[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (fds_[i] >= 0) ::close(fds_[i]);
            fds_[i] = open_one();
            ++reopened;
        }
        return reopened;
    }
    // Keeps the connections open from a thread, re-opening closed ones every 250 ms, until
    // stop() (or at most 2 minutes).
    void keep_up(int per_round) {
        thread_ = std::thread([this, per_round] {
            for (int round = 0; round < 480 && !stop_; ++round) {
                {
                    std::lock_guard<std::mutex> lock(mutex_);
                    top_up(per_round);
                }
                std::this_thread::sleep_for(250ms);
            }
        });
    }
    void close_all() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
        std::lock_guard<std::mutex> lock(mutex_);
        for (int fd : fds_) {
            if (fd >= 0) ::close(fd);
        }
        fds_.clear();
    }

private:
    // A descriptor, or -1 when none could be had.
    int open_one() const {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        // Non-blocking: a connection the listen queue cannot take yet stays pending, held too.
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 &&
            errno != EINPROGRESS) {
            ::close(fd);
            return -1;
        }
        return fd;
    }

    int port_;
    int count_;
    std::vector<int> fds_;
    std::mutex mutex_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

int count_of(const std::string& text, const std::string& needle) {
    int n = 0;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
        ++n;
    return n;
}

}  // namespace

TEST_CASE("lag grows while the target is blocked and returns to zero after",
          "[status][integration]") {
    test::SyncOptions options;
    options.max_ready_lag_seconds = 1;
    SyncFixture f(options);
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('l0', 'before')");
    REQUIRE(wait_until([&] { return status_json(f)["counters"]["txns_applied"] >= 1; }));
    REQUIRE(wait_until([&] { return http_get(f.status_url() + "/readyz").code == 200; }));
    auto s = status_json(f);
    CHECK(s["state"] == "streaming");
    CHECK(s["lag_seconds"] == 0);

    auto blocker = f.target();
    blocker.exec("BEGIN; LOCK TABLE neon_auth.users_sync IN ACCESS EXCLUSIVE MODE");
    // One source transaction: it goes in one batch, and that batch waits in the target for
    // the lock. Sent is not applied: lag must grow while it waits (it once read 0 here).
    std::string rows = "BEGIN;";
    for (int i = 0; i < 20; ++i) {
        rows +=
            "INSERT INTO public.users (id, name) VALUES ('l" + std::to_string(i + 1) + "', 'x');";
    }
    p.exec(rows + "COMMIT");
    REQUIRE(wait_until([&] { return status_json(f)["lag_seconds"].get<double>() > 1.5; }));
    s = status_json(f);
    CHECK(s["lag_bytes"].get<std::uint64_t>() > 0);
    auto ready = http_get(f.status_url() + "/readyz");
    CHECK(ready.code == 503);
    CHECK_THAT(ready.body, Catch::Contains("lag"));
    // `authsync status` exits 1 while lagging.
    auto cli = test::run_shell_output(std::string(AUTHSYNC_EXE) + " status --url " +
                                      f.status_url() + " 2>&1; echo rc=$?");
    CHECK_THAT(cli, Catch::Contains("not ready") && Catch::Contains("rc=1"));
    auto metrics = http_get(f.status_url() + "/metrics");
    CHECK(metrics.code == 200);
    CHECK(metric(metrics.body, "authsync_lag_seconds") > 1.5);
    CHECK(metric(metrics.body, "authsync_lag_bytes") > 0);

    blocker.exec("ROLLBACK");
    REQUIRE(wait_until([&] {
        auto j = status_json(f);
        return j["lag_seconds"] == 0 && j["lag_bytes"] == 0;
    }));
    CHECK(http_get(f.status_url() + "/readyz").code == 200);
    s = status_json(f);
    CHECK(s["counters"]["rows_applied"]["public.users"]["upserts"] == 21);
    metrics = http_get(f.status_url() + "/metrics");
    CHECK(metric(metrics.body, "authsync_lag_seconds") == 0);
    CHECK_THAT(metrics.body, Catch::Contains("authsync_batch_apply_duration_seconds_bucket"));
    CHECK(f.stop() == 0);
}

TEST_CASE("heartbeats keep an idle slot moving and measure end-to-end latency",
          "[status][integration]") {
    test::SyncOptions options;
    options.heartbeat_interval = "300ms";
    SyncFixture f(options);
    f.start();
    auto slot_lsn = [&] {
        auto r = test::provider_cluster().connect().exec_params(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            pg::params(f.slot()));
        return std::string(r.get(0, 0));
    };
    REQUIRE(wait_until([&] { return !status_json(f)["e2e_latency_ms"].is_null(); }));
    // No writes of ours at all: only the heartbeats move the slot.
    auto first = slot_lsn();
    REQUIRE(wait_until([&] { return slot_lsn() != first; }, 10s));
    auto s = status_json(f);
    CHECK(s["e2e_latency_ms"].get<double>() >= 0);
    CHECK(s["e2e_latency_ms"].get<double>() < 5000);
    CHECK(s["slot_health"]["wal_status"] == "reserved");
    auto metrics = http_get(f.status_url() + "/metrics");
    CHECK(metric(metrics.body, "authsync_e2e_latency_seconds_count") >= 1);
    CHECK(f.stop() == 0);
}

TEST_CASE("a configured token guards every endpoint but /healthz", "[status][integration]") {
    test::SyncOptions options;
    options.status_token = "t0ken-sentinel";
    SyncFixture f(options);
    f.start();
    CHECK(http_get(f.status_url() + "/healthz").code == 200);
    for (const char* path : {"/status", "/metrics", "/readyz", "/"}) {
        INFO(path);
        auto open = http_get(f.status_url() + path);
        CHECK(open.code == 401);
        CHECK(http_get(f.status_url() + path, "wrong").code == 401);
        auto ok = http_get(f.status_url() + path, "t0ken-sentinel");
        CHECK((ok.code == 200 || ok.code == 503));
        CHECK_THAT(ok.body, !Catch::Contains("t0ken-sentinel"));
    }
    CHECK(f.stop() == 0);
}

TEST_CASE("authsync status summarizes the endpoint and sets its exit code",
          "[status][integration]") {
    SyncFixture f;
    f.start();
    REQUIRE(wait_until([&] { return http_get(f.status_url() + "/readyz").code == 200; }));
    auto out = test::run_shell_output(std::string(AUTHSYNC_EXE) + " status --url " +
                                      f.status_url() + " 2>&1; echo rc=$?");
    CHECK_THAT(out, Catch::Contains("state:    streaming") && Catch::Contains("rc=0"));
    out = test::run_shell_output(std::string(AUTHSYNC_EXE) + " status --json --url " +
                                 f.status_url() + " 2>&1; echo rc=$?");
    CHECK_THAT(out, Catch::Contains("\"applied_lsn\""));
    CHECK(f.stop() == 0);
    out = test::run_shell_output(std::string(AUTHSYNC_EXE) + " status --url " + f.status_url() +
                                 " 2>&1; echo rc=$?");
    CHECK_THAT(out, Catch::Contains("rc=2"));
}

TEST_CASE("the status endpoint survives malformed and oversized requests",
          "[status][integration]") {
    SyncFixture f;
    f.start();
    auto port = f.status_url().substr(f.status_url().rfind(':') + 1);
    // Garbage, a huge header, a request that never finishes: each answered or closed.
    test::run_shell(
        "printf 'NOT HTTP AT ALL\\r\\n\\r\\n' | timeout 5 bash -c 'cat > /dev/tcp/127.0.0.1/" +
        port + "' || true");
    test::run_shell(
        "head -c 20000 /dev/zero | tr '\\0' a | sed 's/^/GET \\/status HTTP\\/1.1\\r\\nX-Big: /' | "
        "timeout 5 bash -c 'cat > /dev/tcp/127.0.0.1/" +
        port + "' || true");
    auto big = test::run_shell_output(
        "curl -s -m 5 -o /dev/null -w '%{http_code}' -H \"X-Big: $(head -c 20000 /dev/zero | tr "
        "'\\0' a)\" " +
        f.status_url() + "/status || true");
    CHECK(big == "413");
    auto post = test::run_shell_output("curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST " +
                                       f.status_url() + "/status || true");
    CHECK(post == "405");
    CHECK(http_get(f.status_url() + "/nope").code == 404);
    CHECK(http_get(f.status_url() + "/healthz").code == 200);
    CHECK(f.process().running());
    CHECK(f.stop() == 0);
}

TEST_CASE("over status.max_connections the endpoint closes new connections at once",
          "[status][integration]") {
    SyncOptions o;
    o.status_yaml = "  max_connections: 2\n";
    SyncFixture f(o);
    f.start();
    REQUIRE(http_get(f.status_url() + "/healthz").code == 200);
    {
        ConnectionFlood held(f.status_port(), 2);
        // Both held connections are taken (they wait for a request); the third is closed
        // without an answer.
        REQUIRE(wait_until([&] { return http_get(f.status_url() + "/healthz").code == 0; }));
        CHECK(f.process().running());
    }
    CHECK(wait_until([&] { return http_get(f.status_url() + "/healthz").code == 200; }));
    CHECK(f.stop() == 0);
}

TEST_CASE(
    "the engine streams and reconnects while thousands of connections are held open to "
    "the status port",
    "[status][integration]") {
    SyncOptions o;
    o.open_files_limit = 512;  // fewer than the connections held below
    SyncFixture f(o);
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('fl1', 'before')");
    REQUIRE(wait_until([&] {
        return f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'fl1'") == "before";
    }));

    ConnectionFlood flood(f.status_port(), 3000);
    flood.keep_up(200);
    // Streaming goes on.
    p.exec("INSERT INTO public.users (id, name) VALUES ('fl2', 'during')");
    CHECK(wait_until([&] {
        return f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'fl2'") == "during";
    }));
    // A new walsender connection needs a descriptor: terminate the current one.
    const auto walsender = f.provider_value(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '" + f.slot() + "'");
    REQUIRE(walsender != "<null>");
    test::provider_cluster().connect().exec_params("SELECT pg_terminate_backend($1::int)",
                                                   pg::params(walsender));
    p.exec("INSERT INTO public.users (id, name) VALUES ('fl3', 'reconnected')");
    CHECK(wait_until([&] {
        return f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'fl3'") ==
               "reconnected";
    }));
    const auto again = f.provider_value(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '" + f.slot() + "'");
    CHECK(again != "<null>");
    CHECK(again != walsender);
    CHECK(f.process().running());

    flood.close_all();
    CHECK(wait_until([&] { return http_get(f.status_url() + "/healthz").code == 200; }));
    CHECK(f.stop() == 0);
}

TEST_CASE("accept errors back off with one warning per burst instead of spinning",
          "[status][integration]") {
    SyncOptions o;
    o.open_files_limit = 64;
    o.status_yaml = "  max_connections: 1000\n";  // so that accept, not the cap, runs out
    SyncFixture f(o);
    f.start();
    {
        ConnectionFlood flood(f.status_port(), 200);
        REQUIRE(wait_until([&] {
            return f.process().log().find("status endpoint: cannot accept") != std::string::npos;
        }));
        CHECK(f.process().running());
    }
    CHECK(wait_until([&] { return http_get(f.status_url() + "/healthz").code == 200; }));
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('ae1', 'after')");
    CHECK(wait_until([&] {
        return f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'ae1'") == "after";
    }));
    // Each failed accept waits 100 ms and only the first of a burst is logged: a handful of
    // lines, not one per attempt.
    const auto warnings = count_of(f.process().log(), "status endpoint: cannot accept");
    INFO(warnings);
    CHECK(warnings >= 1);
    CHECK(warnings <= 10);
    CHECK(f.stop() == 0);
}

TEST_CASE("with status.tls the endpoint answers over https only", "[status][integration][tls]") {
    char tmpl[] = "/tmp/authsync-tls-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    // A self-signed certificate for 127.0.0.1, made here.
    REQUIRE(test::run_shell_output(
                "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                "-addext subjectAltName=IP:127.0.0.1 -keyout " +
                dir + "/key.pem -out " + dir + "/cert.pem >/dev/null 2>&1 && echo made") ==
            "made\n");
    SyncOptions o;
    o.status_token = "tls-t0ken";
    o.status_yaml = "  tls:\n    certificate: " + dir + "/cert.pem\n    key: " + dir + "/key.pem\n";
    SyncFixture f(o);
    f.start();
    const auto https = "https://127.0.0.1:" + std::to_string(f.status_port());
    auto get = [&](const std::string& url, const std::string& extra) {
        auto out = test::run_shell_output("curl -s -m 5 -w '\\n%{http_code}' " + extra + " '" +
                                          url + "' || true");
        auto nl = out.rfind('\n');
        return HttpResult{std::atoi(out.substr(nl + 1).c_str()), out.substr(0, nl)};
    };
    const auto ca = "--cacert " + dir + "/cert.pem";
    auto health = get(https + "/healthz", ca);
    CHECK(health.code == 200);
    auto status = get(https + "/status", ca + " -H 'Authorization: Bearer tls-t0ken'");
    CHECK(status.code == 200);
    CHECK(json::parse(status.body)["state"] == "streaming");
    CHECK(get(https + "/status", ca).code == 401);
    // Without the CA the client refuses the certificate; in plaintext nothing answers.
    CHECK(get(https + "/healthz", "").code == 0);
    auto plain = get(f.status_url() + "/healthz", "");
    CHECK(plain.code == 0);
    CHECK_THAT(plain.body, !Catch::Contains("ok"));
    // `authsync status` speaks https too: it verifies the certificate against --cacert.
    auto summary =
        test::run_shell_output("AUTHSYNC_STATUS_TOKEN=tls-t0ken " AUTHSYNC_EXE " status --url " +
                               https + " --cacert " + dir + "/cert.pem 2>&1; echo rc=$?");
    CHECK_THAT(summary, Catch::Contains("streaming") && Catch::Contains("rc=0"));
    auto untrusted =
        test::run_shell_output("AUTHSYNC_STATUS_TOKEN=tls-t0ken " AUTHSYNC_EXE " status --url " +
                               https + " 2>&1; echo rc=$?");
    CHECK_THAT(untrusted, Catch::Contains("certificate verify failed") && Catch::Contains("rc=2"));
    CHECK(f.process().running());
    CHECK(f.stop() == 0);
    std::filesystem::remove_all(dir);
}

TEST_CASE("the status page renders the state and the lag chart in headless Chromium",
          "[status][integration][browser]") {
    SyncFixture f;
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('page', 'P')");
    REQUIRE(wait_until([&] { return status_json(f)["counters"]["txns_applied"] >= 1; }));
    char tmpl[] = "/tmp/authsync-chromium-XXXXXX";
    std::string profile = ::mkdtemp(tmpl);
    const std::string chromium =
        "chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        "--user-data-dir=" +
        profile + " ";
    // --dump-dom prints the DOM after the page's scripts ran.
    auto dom = test::run_shell_output(chromium + "--virtual-time-budget=3000 --dump-dom " +
                                      f.status_url() + "/ 2>/dev/null");
    CHECK_THAT(dom, Catch::Contains("id=\"state\""));
    CHECK_THAT(dom, Catch::Contains("streaming"));
    CHECK_THAT(dom, Catch::Contains("id=\"lag-chart\""));
    CHECK_THAT(dom, Catch::Contains("<svg"));
    auto shot = profile + "/page.png";
    test::run_shell(chromium + "--window-size=1000,700 --screenshot=" + shot + " " +
                    f.status_url() + "/ >/dev/null 2>&1");
    CHECK(std::filesystem::file_size(shot) > 1000);
    if (const char* keep = std::getenv("AUTHSYNC_KEEP_SCREENSHOT")) {
        std::filesystem::copy_file(shot, keep, std::filesystem::copy_options::overwrite_existing);
    }
    std::filesystem::remove_all(profile);
    CHECK(f.stop() == 0);
}
