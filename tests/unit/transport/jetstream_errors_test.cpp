// transient_jetstream_error (transport/jetstream_errors.hpp): which of nats-server's error
// codes (server/errors.json, 2.9.10) a source or sink waits out, and which stop it.
#include "authsync/transport/jetstream_errors.hpp"

#include <catch2/catch.hpp>

using authsync::transport::transient_jetstream_error;

TEST_CASE("JetStream errors of a cluster restarting or electing are worth a retry",
          "[unit][jetstream]") {
    CHECK(transient_jetstream_error(10008));  // JetStream system temporarily unavailable
    CHECK(transient_jetstream_error(10005));  // no suitable peers for placement
    CHECK(transient_jetstream_error(10119));  // consumer is offline (its node stopped)
    CHECK(transient_jetstream_error(10118));  // stream is offline
    CHECK(transient_jetstream_error(10059));  // stream not found (a node not caught up yet)
    CHECK(transient_jetstream_error(10014));  // consumer not found (an idle session's, removed)
    CHECK(transient_jetstream_error(10009));  // cluster can not handle request (no leader)
    CHECK(transient_jetstream_error(10004));  // incomplete results (nodes did not answer)
    CHECK(transient_jetstream_error(10007));  // this node is not assigned the asset (yet)
    CHECK(transient_jetstream_error(10041));  // raft general error
}

TEST_CASE("JetStream errors no retry can mend stop the role", "[unit][jetstream]") {
    CHECK_FALSE(transient_jetstream_error(10065));  // subjects overlap with an existing stream
    CHECK_FALSE(transient_jetstream_error(10074));  // replicas > 1 in non-clustered mode
    CHECK_FALSE(transient_jetstream_error(10076));  // JetStream not enabled
    CHECK_FALSE(transient_jetstream_error(10052));  // stream configuration validation error
    CHECK_FALSE(transient_jetstream_error(10058));  // stream name already in use
    CHECK_FALSE(transient_jetstream_error(10006));  // JetStream not in clustered mode
    CHECK_FALSE(transient_jetstream_error(10010));  // clustering support required
    CHECK_FALSE(transient_jetstream_error(0));      // no code: the caller decides
}
