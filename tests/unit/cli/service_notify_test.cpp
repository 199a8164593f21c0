#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <string>

#include "authsync/cli/service_notify.hpp"

using namespace authsync::cli;

namespace {

// A datagram socket standing in for systemd's notification socket.
struct FakeManager {
    int fd = -1;
    std::string path;
    FakeManager() {
        char dir[] = "/tmp/authsync-notify-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        path = std::string(dir) + "/notify";
        fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strcpy(addr.sun_path, path.c_str());
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        timeval tv{2, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~FakeManager() {
        ::close(fd);
        ::unlink(path.c_str());
        ::rmdir(path.substr(0, path.rfind('/')).c_str());
    }
    std::string receive() const {
        char buf[512];
        auto n = ::recv(fd, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }
};

struct Env {
    explicit Env(const char* name, const std::string& value) : name_(name) {
        ::setenv(name, value.c_str(), 1);
    }
    ~Env() { ::unsetenv(name_); }
    const char* name_;
};

}  // namespace

TEST_CASE("without NOTIFY_SOCKET the notifier does nothing", "[cli]") {
    ::unsetenv("NOTIFY_SOCKET");
    ServiceNotifier n;
    CHECK_FALSE(n.enabled());
    CHECK_FALSE(n.notify("READY=1"));
}

TEST_CASE("notifications reach the socket named by NOTIFY_SOCKET", "[cli]") {
    FakeManager manager;
    Env socket("NOTIFY_SOCKET", manager.path);
    Env watchdog("WATCHDOG_USEC", "3000000");
    ServiceNotifier n;
    REQUIRE(n.enabled());
    REQUIRE(n.watchdog());
    CHECK(n.watchdog()->count() == 3'000'000);
    CHECK(n.notify("READY=1\nSTATUS=streaming"));
    CHECK(manager.receive() == "READY=1\nSTATUS=streaming");
    CHECK(n.notify("WATCHDOG=1"));
    CHECK(manager.receive() == "WATCHDOG=1");
}

TEST_CASE("a watchdog meant for another process is ignored", "[cli]") {
    FakeManager manager;
    Env socket("NOTIFY_SOCKET", manager.path);
    Env watchdog("WATCHDOG_USEC", "3000000");
    Env pid("WATCHDOG_PID", std::to_string(::getpid() + 1));
    ServiceNotifier n;
    CHECK(n.enabled());
    CHECK_FALSE(n.watchdog());
}
