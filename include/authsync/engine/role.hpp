// RoleSession: one connected run of what this process does, as the Supervisor drives it
// (start, stop, reconnect with backoff, reload). Three kinds:
// - the in-process engine (engine.cpp's Session): slot -> every target database;
// - the source role (source_role.cpp, transport.kind: nats): slot -> a JetStream stream, one
//   subject per target, the provider acknowledged for what the stream has stored;
// - a sink (sink_role.cpp, `authsync sink --target NAME`): the target's subject -> its
//   database, the checkpoint in the same transaction, the stream acknowledged once durable.
#pragma once

#include <utility>  // before Asio (Boost 1.74)

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string>
#include <vector>

#include "authsync/config/config.hpp"
#include "authsync/core/error.hpp"
#include "authsync/engine/status.hpp"
#include "authsync/transport/sink_cursor.hpp"

namespace authsync::engine {

namespace asio = boost::asio;

class RoleSession {
public:
    virtual ~RoleSession() = default;
    virtual asio::awaitable<void> run() = 0;
    // A clean stop: finish or roll back what is in flight, report, return.
    virtual void request_stop() = 0;
    // The stop grace period is over: drop the connections.
    virtual void abort() = 0;
    virtual bool reached_streaming() const = 0;
    // Done with what it was started for (e.g. a resync's copy): not run again.
    virtual bool finished() const { return false; }
    // Targets that must join with a copy of their own (the in-process engine's fan-out).
    virtual const std::vector<std::string>& joiners() const {
        static const std::vector<std::string> none;
        return none;
    }
};

// Whether this build has the JetStream transport (libnats).
bool has_jetstream();

// The source role for `config` (transport.kind: nats). Throws ConfigError without libnats.
std::unique_ptr<RoleSession> make_source_session(const config::Config& config, EngineStatus& status,
                                                 asio::any_io_executor ex);
// The sink of target `index` of `config` (transport.kind: nats). `reread`: the role's, kept
// across its sessions (a gap found again where the last session reread is a hole: a copy).
std::unique_ptr<RoleSession> make_sink_session(const config::Config& config, std::size_t index,
                                               EngineStatus& status,
                                               transport::RereadMemory& reread,
                                               asio::any_io_executor ex);

}  // namespace authsync::engine
