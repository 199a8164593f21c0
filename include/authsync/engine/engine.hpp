// The sync engine: the provider's slot in, neon_auth.users_sync out, exactly once.
//
// Session: one connected run. It connects to the target (takes the per-slot advisory lock,
// creates the schema, reads the checkpoint), prepares the source (publication, slot), then
// streams: decode -> map -> collapse into a Batch -> apply in one target transaction that also
// writes the checkpoint (end_lsn of the last source Commit it holds). Only then is that LSN
// reported to the provider as flushed. While nothing is pending, keepalives are acknowledged
// at their WAL end so an idle slot never holds WAL.
//
// Supervisor: runs sessions on one event loop until SIGTERM/SIGINT; connection loss, server
// restarts, serialization failures and "slot is active" reconnect with exponential backoff and
// jitter; protocol, mapping and constraint errors stop the process with exit code 1. With
// fanout.max_target_lag, a target that keeps failing is detached instead: sessions run without
// it (pipeline::TargetHealth) while a probe waits for its server, then it is copied again.
#pragma once

#include <utility>  // before Asio (Boost 1.74)

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <random>

#include "authsync/config/config.hpp"
#include "authsync/engine/role.hpp"
#include "authsync/engine/status.hpp"
#include "authsync/pipeline/target_health.hpp"

namespace authsync::engine {

namespace asio = boost::asio;

class RoleSession;

struct SessionOptions {
    // Drop the slot, copy every user again and reconcile the target (`authsync resync`).
    bool resync = false;
    // Exit once the slot is ready and any copy is done, instead of streaming.
    bool stop_after_backfill = false;
    // `authsync sink --target NAME`: apply that target (its index in the config) from the
    // JetStream stream, instead of reading the slot.
    std::optional<std::size_t> sink_target;
};

class Supervisor {
public:
    Supervisor(asio::io_context& io, config::Config config, SessionOptions options = {});
    ~Supervisor();

    // Runs until stopped or a permanent error; returns the exit code (0 or 1).
    asio::awaitable<int> run();
    // Asks for a clean stop: finish or roll back the batch in flight, report, return.
    void request_stop();
    // SIGHUP: the session ends cleanly and the next one runs with `next` (targets added join
    // with a copy of their own, targets removed stop; the status endpoint keeps its settings).
    // A config that then fails to start for good is dropped for the one before.
    void reload(config::Config next);

    const EngineStatus& status() const { return status_; }
    // What the status endpoint shows, now.
    status::Snapshot snapshot() const;
    const config::Config& config() const { return config_; }

private:
    asio::awaitable<void> sample_lag();
    asio::awaitable<void> probe_detached();
    bool take_reload();
    // What the next session runs: the config without its detached targets.
    // none while every target is detached or copies to join.
    std::optional<config::Config> session_config() const;
    // A session failed on target `name` (stalled: a step of it unanswered since then): true
    // when it is left out of the next one.
    bool leave_out(const std::string& name, bool transient, const std::string& failure,
                   std::size_t attached,
                   std::optional<std::chrono::steady_clock::time_point> stalled_since);
    void restart_session();
    std::unique_ptr<RoleSession> make_session(const config::Config& running,
                                              asio::any_io_executor ex);
    // Counts a session's failure and keeps it for /status.
    void record_failure(const std::string& failure);
    bool another_config(const std::string& failure);
    void start_joining(const std::vector<std::string>& names);
    asio::awaitable<void> join_targets();
    asio::awaitable<void> back_off(const std::string& failure, std::chrono::milliseconds window,
                                   std::mt19937_64& rng);

    asio::io_context& io_;
    config::Config config_;
    SessionOptions session_options_;
    EngineStatus status_;
    bool stop_requested_ = false;
    RoleSession* session_ = nullptr;          // the running session, for request_stop
    std::optional<config::Config> pending_;   // reload(): the config of the next session
    std::optional<config::Config> previous_;  // the last config that started, while a reloaded
                                              // one has not reached streaming yet
    pipeline::TargetHealth health_;           // fan-out: targets detached, and since when they fail
    std::vector<std::string> joining_;        // fan-out: targets copying alongside the stream
    bool joiner_running_ = false;             // join_targets() runs
    std::optional<Lsn> ack_hold_;             // the slot is acknowledged no further while they copy
    transport::RereadMemory sink_reread_;     // a sink role's, across its sessions
    asio::steady_timer backoff_timer_;
    asio::steady_timer stop_deadline_;
};

// How often a detached target's server is tried, to re-attach it.
inline constexpr std::chrono::seconds kReattachProbe{5};

// How long a clean stop may wait for the batch in flight before rolling it back.
inline constexpr std::chrono::milliseconds kStopGrace{5000};

}  // namespace authsync::engine
