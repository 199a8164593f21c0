// Without libnats: the roles of transport.kind: nats are refused with what to do.
#include "authsync/engine/role.hpp"

namespace authsync::engine {

bool has_jetstream() {
    return false;
}

std::unique_ptr<RoleSession> make_source_session(const config::Config&, EngineStatus&,
                                                 asio::any_io_executor) {
    throw ConfigError(
        "transport.kind: nats needs authsync built with libnats (install libnats-dev and "
        "build again)");
}

std::unique_ptr<RoleSession> make_sink_session(const config::Config& config, std::size_t,
                                               EngineStatus& status, transport::RereadMemory&,
                                               asio::any_io_executor ex) {
    return make_source_session(config, status, std::move(ex));
}

}  // namespace authsync::engine
