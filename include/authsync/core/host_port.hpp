// `host:port` as status.listen and `authsync status --url` write it: a name or IPv4 address,
// or an IPv6 address in brackets (`[::1]:8080`), then the port. One reading for the config
// check, the server that listens and the client that connects. Pure: nothing is resolved.
#pragma once

#include <optional>
#include <string_view>

namespace authsync {

struct HostPort {
    std::string_view host;                 // an IPv6 address without its brackets
    std::optional<std::string_view> port;  // as written, unchecked; none when there is no ':'
    // Why the text is not host[:port] (`has no closing "]"`, `needs brackets around an IPv6
    // address`); empty when it is.
    std::string_view problem;
};

// Views into `text`. `[::1]8080` has no port (what follows the bracket is not one).
HostPort split_host_port(std::string_view text);

}  // namespace authsync
