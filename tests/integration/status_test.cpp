// The status endpoint of a running authsync, read with a real HTTP client (curl).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

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

}  // namespace

TEST_CASE("lag grows while the target is blocked and returns to zero after", "[status][integration]") {
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
    for (int i = 0; i < 20; ++i) {
        p.exec("INSERT INTO public.users (id, name) VALUES ('l" + std::to_string(i + 1) + "', 'x')");
    }
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

TEST_CASE("heartbeats keep an idle slot moving and measure end-to-end latency", "[status][integration]") {
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

TEST_CASE("authsync status summarizes the endpoint and sets its exit code", "[status][integration]") {
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

TEST_CASE("the status endpoint survives malformed and oversized requests", "[status][integration]") {
    SyncFixture f;
    f.start();
    auto port = f.status_url().substr(f.status_url().rfind(':') + 1);
    // Garbage, a huge header, a request that never finishes: each answered or closed.
    test::run_shell("printf 'NOT HTTP AT ALL\\r\\n\\r\\n' | timeout 5 bash -c 'cat > /dev/tcp/127.0.0.1/" + port + "' || true");
    test::run_shell("head -c 20000 /dev/zero | tr '\\0' a | sed 's/^/GET \\/status HTTP\\/1.1\\r\\nX-Big: /' | timeout 5 bash -c 'cat > /dev/tcp/127.0.0.1/" + port + "' || true");
    auto big = test::run_shell_output("curl -s -m 5 -o /dev/null -w '%{http_code}' -H \"X-Big: $(head -c 20000 /dev/zero | tr '\\0' a)\" " + f.status_url() + "/status || true");
    CHECK(big == "413");
    auto post = test::run_shell_output("curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST " + f.status_url() + "/status || true");
    CHECK(post == "405");
    CHECK(http_get(f.status_url() + "/nope").code == 404);
    CHECK(http_get(f.status_url() + "/healthz").code == 200);
    CHECK(f.process().running());
    CHECK(f.stop() == 0);
}

TEST_CASE("the status page renders the state and the lag chart in headless Chromium", "[status][integration][browser]") {
    SyncFixture f;
    f.start();
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('page', 'P')");
    REQUIRE(wait_until([&] { return status_json(f)["counters"]["txns_applied"] >= 1; }));
    char tmpl[] = "/tmp/authsync-chromium-XXXXXX";
    std::string profile = ::mkdtemp(tmpl);
    const std::string chromium =
        "chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        "--user-data-dir=" + profile + " ";
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
