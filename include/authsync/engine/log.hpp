// The engine's named loggers (spdlog), made on first use from the default logger's sinks.
#pragma once

#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace authsync::engine {

std::shared_ptr<spdlog::logger> logger(const std::string& name);

}  // namespace authsync::engine
