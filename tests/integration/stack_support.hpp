// Shared by the stack-auth tests (in-process and through JetStream): what a target holds,
// rendered as tests/fixtures/stack-auth/reference.sql renders the provider, and comparing the two.
#pragma once

#include <map>
#include <string>

#include "pg_cluster.hpp"
#include "sync_fixture.hpp"

namespace authsync::test {

// What the target holds, rendered as reference.sql renders the provider: by reference name.
std::map<std::string, std::string> target_queries();

// Target database `db` equals what reference.sql computes for `tenancy` on the provider, and
// holds no mirror row of another tenancy.
void require_target_matches(SyncFixture& f, const std::string& db, const std::string& tenancy,
                            PgCluster& cluster = target_cluster());

// The same, as a yes or no (to wait on).
bool target_matches(SyncFixture& f, const std::string& db, const std::string& tenancy,
                    PgCluster& cluster = target_cluster());

}  // namespace authsync::test
