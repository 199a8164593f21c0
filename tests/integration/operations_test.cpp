// Running authsync the way operators do: JSON logs for log shippers, systemd's notification
// protocol (Type=notify), on real servers.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using nlohmann::json;
using test::SyncFixture;
using test::wait_until;

TEST_CASE("--log-format json writes one JSON object per line, with slot and lsn fields",
          "[operations][integration]") {
    test::SyncOptions options;
    options.log_format = "json";
    options.log_level = "info";
    options.dsn_suffix = " password=sentinel-pw-7373";  // trust auth: the server ignores it
    SyncFixture f(options);
    f.start();
    f.provider().exec(
        "INSERT INTO public.users (id, name, email) VALUES ('j1', 'Jo', 'jo@example.com')");
    REQUIRE(wait_until([&] {
        return f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE id = 'j1'") == "1";
    }));
    CHECK(f.stop() == 0);

    const auto log = f.process().log();
    INFO(log);
    std::istringstream lines(log);
    std::string line;
    int parsed = 0;
    bool streaming = false, stopped = false;
    while (std::getline(lines, line)) {
        if (line.empty()) continue;
        json j;
        REQUIRE_NOTHROW(j = json::parse(line));
        REQUIRE(j.is_object());
        CHECK(j["time"].is_string());
        CHECK(j["level"].is_string());
        CHECK(j["logger"].is_string());
        CHECK(j["message"].is_string());
        ++parsed;
        const auto message = j["message"].get<std::string>();
        if (message.rfind("streaming slot=", 0) == 0) {
            streaming = true;
            CHECK(j["slot"] == f.slot());
            CHECK(j["lsn"].get<std::string>().find('/') != std::string::npos);
        }
        if (message.rfind("stopped at lsn=", 0) == 0) stopped = true;
    }
    CHECK(parsed >= 3);
    CHECK(streaming);
    CHECK(stopped);
    // Info level: no password, no row values.
    CHECK(log.find("sentinel-pw-7373") == std::string::npos);
    CHECK(log.find("jo@example.com") == std::string::npos);
}

namespace {

// A datagram socket standing in for systemd's notification socket; collects what arrives.
class FakeSystemd {
public:
    FakeSystemd() {
        char dir[] = "/tmp/authsync-notify-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        dir_ = dir;
        path_ = dir_ + "/notify";
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strcpy(addr.sun_path, path_.c_str());
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        timeval tv{0, 100'000};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~FakeSystemd() {
        ::close(fd_);
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    const std::string& path() const { return path_; }
    // Everything received so far, one datagram per line.
    const std::string& received() {
        char buf[512];
        for (;;) {
            auto n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) break;
            received_.append(buf, static_cast<std::size_t>(n));
            received_ += '\n';
        }
        return received_;
    }
    bool got(const std::string& what) { return received().find(what) != std::string::npos; }

private:
    int fd_ = -1;
    std::string dir_, path_, received_;
};

}  // namespace

TEST_CASE(
    "under systemd's notify protocol: READY once running, WATCHDOG from the loop, STOPPING on "
    "SIGTERM",
    "[operations][integration]") {
    FakeSystemd systemd;
    // The child inherits the environment when it starts.
    ::setenv("NOTIFY_SOCKET", systemd.path().c_str(), 1);
    ::setenv("WATCHDOG_USEC", "1000000", 1);
    SyncFixture f;
    f.start();
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");

    REQUIRE(wait_until([&] { return systemd.got("READY=1"); }, 10s));
    REQUIRE(wait_until([&] { return systemd.got("STATUS=streaming"); }, 10s));
    // Pings at half the 1 s interval: several within two seconds.
    const auto before = systemd.received().size();
    std::this_thread::sleep_for(2s);
    const auto& all = systemd.received();
    std::size_t pings = 0;
    for (auto at = all.find("WATCHDOG=1", before); at != std::string::npos;
         at = all.find("WATCHDOG=1", at + 1)) {
        ++pings;
    }
    CHECK(pings >= 3);
    CHECK_FALSE(systemd.got("STOPPING=1"));
    CHECK(f.stop() == 0);
    CHECK(systemd.got("STOPPING=1"));
    // READY came once.
    const auto& text = systemd.received();
    CHECK(text.find("READY=1") == text.rfind("READY=1"));
}
