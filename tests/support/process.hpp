// A child process for tests: `authsync run` started, signalled and reaped like an operator
// (or a crash) would.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace authsync::test {

// Sanitizers multiply a process's memory (shadow memory, allocator quarantine), so memory
// bounds are checked only in the plain build; scripts/test runs the suite in both builds.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kMemoryBoundsChecked = false;
#else
inline constexpr bool kMemoryBoundsChecked = true;
#endif

class Process {
public:
    // argv[0] is the program path; output (stdout and stderr) goes to log_path.
    Process(std::vector<std::string> argv, std::string log_path);
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    void start();
    bool running();
    void signal(int sig);
    // Waits for exit; returns the exit code (128+signal when killed), or -1 on timeout.
    int wait(std::chrono::milliseconds timeout);
    // SIGKILL and reap.
    void kill9();
    std::string log() const;
    pid_t pid() const { return pid_; }
    // Peak resident set size (VmHWM) of the running process in kB, or -1.
    long peak_rss_kb() const;

private:
    std::vector<std::string> argv_;
    std::string log_path_;
    pid_t pid_ = -1;
    int exit_code_ = -1;
};

// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
bool wait_until(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace authsync::test
