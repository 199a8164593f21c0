#include "authsync/core/host_port.hpp"

namespace authsync {

HostPort split_host_port(std::string_view text) {
    HostPort out;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            out.problem = "has no closing \"]\"";
            return out;
        }
        out.host = text.substr(1, close - 1);
        if (close + 1 < text.size() && text[close + 1] == ':') out.port = text.substr(close + 2);
        return out;
    }
    const auto colon = text.rfind(':');
    out.host = text.substr(0, colon);
    if (colon == std::string_view::npos) return out;
    out.port = text.substr(colon + 1);
    if (out.host.find(':') != std::string_view::npos) {
        out.problem = "needs brackets around an IPv6 address";
    }
    return out;
}

}  // namespace authsync
