// What the source role and the sinks agree on about the JetStream stream (private to engine/):
// its spec, the connection settings, a target's subject, and running a
// blocking JetStream call off the event loop.
#pragma once

#include <utility>  // before Asio (Boost 1.74)

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <string>

#include "authsync/config/config.hpp"
#include "authsync/transport/frame.hpp"
#include "authsync/transport/jetstream.hpp"

namespace authsync::engine {

inline transport::NatsConfig nats_config(const config::Config& config, const std::string& role) {
    transport::NatsConfig c;
    c.servers = config.transport.servers;
    c.name = "authsync " + role;
    return c;
}

// How long creating the stream keeps trying while the cluster cannot answer (just started,
// or electing); past it the failure is transient and the role starts again after its backoff.
inline constexpr std::chrono::seconds kStreamSetupDeadline{10};

// One stream for every slot and target under the prefix: each source publishes its own slot's
// subjects, so that several sources may share it.
inline transport::StreamSpec stream_spec(const config::Config& config) {
    const auto& t = config.transport;
    transport::StreamSpec s;
    s.name = t.stream;
    s.subjects = {t.subject_prefix + ".>"};
    s.replicas = t.replicas;
    s.max_bytes = t.max_bytes;
    s.max_age = t.max_age;
    s.duplicate_window = t.duplicate_window;
    return s;
}

// How long a subject may go without a message before the source publishes a mark to it
// (transport/frame.hpp): a quarter of the stream's max_age, so that retention never empties it,
// and at most a minute (max_bytes discards too; a sink that starts on an empty subject finds the
// gap with the next mark).
inline std::chrono::milliseconds mark_interval(const config::TransportConfig& t) {
    constexpr std::chrono::milliseconds kLongest{60'000};
    constexpr std::chrono::milliseconds kShortest{250};
    if (!t.max_age) return kLongest;
    return std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(*t.max_age) / 4,
                      kShortest, kLongest);
}

inline std::string target_subject(const config::Config& config, const std::string& target) {
    return transport::frame_subject(config.transport.subject_prefix, config.source.slot, target);
}

// Runs `f` (a blocking JetStream call) on `pool` and resumes the caller on its own executor
// with the result, or the exception.
template <typename F>
auto off_thread(boost::asio::thread_pool& pool, F f) -> boost::asio::awaitable<decltype(f())> {
    using R = decltype(f());
    co_return co_await boost::asio::co_spawn(
        pool.get_executor(),
        [f = std::move(f)]() mutable -> boost::asio::awaitable<R> { co_return f(); },
        boost::asio::use_awaitable);
}

}  // namespace authsync::engine
