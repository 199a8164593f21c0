// Hex text <-> bytes, for fixtures, `authsync decode` and logs at debug level, and the hex
// digits of COPY escapes and percent-encoding. Pure.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace authsync {

// The value of one hex digit (either case), or -1 when `c` is not one.
int hex_value(char c);

// Decodes hex digits (either case), with an optional leading `\x`. Throws ProtocolError on an odd
// number of digits or a non-hex character, naming its position.
std::vector<std::byte> hex_decode(std::string_view text);
std::string hex_encode(std::span<const std::byte> bytes);

inline std::span<const std::byte> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace authsync
