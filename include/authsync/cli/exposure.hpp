// What a config leaves open on the network, said as warnings by `authsync check` and at the
// start of `authsync run`: a status endpoint reachable from other hosts without a token or
// without TLS, and a database reached over the network with an sslmode weaker than
// verify-full (libpq's default, prefer, checks nothing and falls back to plaintext).
//
// Only warnings: a private network may make each of these a fair choice. Nothing here
// connects anywhere; DSNs are read with libpq's own parser, with the PG* environment
// variables libpq would fall back to.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "authsync/config/config.hpp"

namespace authsync::cli {

// A host that never leaves this machine: empty or a socket directory (libpq's Unix socket),
// localhost, 127.0.0.0/8, ::1.
bool is_local_host(std::string_view host);

// One line per exposure, lower case, no secrets (DSNs are not quoted, only the host).
std::vector<std::string> exposure_warnings(const config::Config& config,
                                           const config::EnvLookup& env);

}  // namespace authsync::cli
