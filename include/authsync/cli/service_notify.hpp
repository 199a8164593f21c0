// systemd's service notification protocol (sd_notify), spoken directly: a datagram of
// "KEY=VALUE" lines to the AF_UNIX socket named by $NOTIFY_SOCKET. No libsystemd needed; when
// the variable is unset (not under systemd, or not Type=notify) every call does nothing.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace authsync::cli {

class ServiceNotifier {
public:
    // Reads $NOTIFY_SOCKET and $WATCHDOG_USEC (honoured only when $WATCHDOG_PID is unset or
    // this process's pid).
    ServiceNotifier();
    ~ServiceNotifier();
    ServiceNotifier(const ServiceNotifier&) = delete;
    ServiceNotifier& operator=(const ServiceNotifier&) = delete;

    bool enabled() const { return fd_ >= 0; }
    // The watchdog interval systemd asked for ($WATCHDOG_USEC), if any.
    std::optional<std::chrono::microseconds> watchdog() const { return watchdog_; }
    // Sends one notification, e.g. "READY=1\nSTATUS=streaming". Failures are ignored (the
    // service manager may be restarting); returns whether the datagram went out.
    bool notify(std::string_view state);

private:
    int fd_ = -1;
    std::string address_;  // the socket path ('@' for the abstract namespace)
    std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace authsync::cli
