#include "authsync/engine/log.hpp"

#include <spdlog/spdlog.h>

namespace authsync::engine {

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
    auto l = spdlog::get(name);
    if (!l) {
        l = spdlog::default_logger()->clone(name);
        spdlog::register_logger(l);
    }
    return l;
}

}  // namespace authsync::engine
