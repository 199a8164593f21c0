// Shared by the preset tests: fixture files under tests/fixtures/<preset>/, their reference
// queries, and comparing what the target holds with what a reference query computes on the
// provider.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "authsync/pg/connection.hpp"

namespace authsync::test {

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
