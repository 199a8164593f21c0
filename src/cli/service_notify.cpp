#include "authsync/cli/service_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace authsync::cli {

ServiceNotifier::ServiceNotifier() {
    const char* socket_path = std::getenv("NOTIFY_SOCKET");
    if (socket_path == nullptr || socket_path[0] == '\0') return;
    address_ = socket_path;
    if (address_[0] != '/' && address_[0] != '@') return;  // only paths and abstract names
    if (address_.size() >= sizeof(sockaddr_un{}.sun_path)) return;
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const char* usec = std::getenv("WATCHDOG_USEC");
    const char* pid = std::getenv("WATCHDOG_PID");
    const bool ours = pid == nullptr || std::strtol(pid, nullptr, 10) == ::getpid();
    if (usec != nullptr && ours) {
        char* end = nullptr;
        const long long v = std::strtoll(usec, &end, 10);
        if (end != usec && *end == '\0' && v > 0) watchdog_ = std::chrono::microseconds(v);
    }
}

ServiceNotifier::~ServiceNotifier() {
    if (fd_ >= 0) ::close(fd_);
}

bool ServiceNotifier::notify(std::string_view state) {
    if (fd_ < 0) return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, address_.data(), address_.size());
    if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
    const auto sent = ::sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL,
                               reinterpret_cast<const sockaddr*>(&addr), len);
    return sent == static_cast<ssize_t>(state.size());
}

}  // namespace authsync::cli
