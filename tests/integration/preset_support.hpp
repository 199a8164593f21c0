// Shared by the preset tests: fixture files under tests/fixtures/<preset>/, their reference
// queries, and comparing what the target holds with what a reference query computes on the
// provider.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "authsync/pg/connection.hpp"
#include "sync_fixture.hpp"

namespace authsync::test {

// Replaces the first `from` in the fixture's config file with `to`; fails when it is absent.
void replace_in_config(SyncFixture& f, const std::string& from, const std::string& to);
// Runs `workload_sql` on the provider while SIGKILLing and restarting authsync every
// `interval`, up to `max_kills` times; fails the test if the workload fails. Returns the kills,
// with authsync streaming again.
int run_with_kills(SyncFixture& f, const std::string& workload_sql, int max_kills = 4,
                   std::chrono::milliseconds interval = std::chrono::milliseconds(500));

// tests/fixtures/<dir>/<name>, whole.
std::string read_preset_fixture(const std::string& dir, const std::string& name);
// name -> query, from the "-- name: X" sections of tests/fixtures/<dir>/reference.sql.
std::map<std::string, std::string> reference_queries(const std::string& dir);

using Rows = std::vector<std::vector<std::string>>;
// All rows as text ("<null>" for NULL), sorted.
Rows sorted_rows(const pg::Result& r);
// Fails the test naming the first differing row (its values are test data) when they differ.
void require_same_rows(const std::string& what, const Rows& expected, const Rows& actual);

}  // namespace authsync::test
