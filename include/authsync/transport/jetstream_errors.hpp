// Which JetStream API errors (the server's `err_code`, nats.c's jsErrCode) may pass if the
// same request is sent again: states a cluster goes through while nodes restart, leaders are
// elected, or assets are placed. Everything else (a configuration the servers refuse, subjects
// taken by another stream, JetStream off) is permanent: trying again cannot help. Pure.
#pragma once

namespace authsync::transport {

bool transient_jetstream_error(int err_code);

}  // namespace authsync::transport
