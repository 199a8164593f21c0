// Access to the bytes captured from a real PostgreSQL 15 by tests/fixtures/capture.sh.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace authsync::test {

using Bytes = std::vector<std::byte>;

// Every line of tests/fixtures/<relative_path> (a .hex file), decoded. Throws when missing.
std::vector<Bytes> load_hex_fixture(const std::string& relative_path);
// Every .hex file under tests/fixtures/<dir>, as paths relative to tests/fixtures.
std::vector<std::string> list_hex_fixtures(const std::string& dir);
std::string fixture_path(const std::string& relative_path);

}  // namespace authsync::test
