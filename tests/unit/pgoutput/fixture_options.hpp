// The decoder options each captured fixture was produced with (see
// tests/fixtures/pgoutput/README.md).
#pragma once

#include <string>

#include "authsync/pgoutput/decoder.hpp"

namespace authsync::test {

inline pgoutput::DecoderOptions options_for_fixture(const std::string& path) {
    pgoutput::DecoderOptions o;
    if (path.find("/stream") != std::string::npos) o.proto_version = 2;
    if (path.find("/two_phase") != std::string::npos) o.proto_version = 3;
    return o;
}

}  // namespace authsync::test
