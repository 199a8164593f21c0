#include "fixtures.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "authsync/core/hex.hpp"

namespace authsync::test {

std::string fixture_path(const std::string& relative_path) {
    return std::string(AUTHSYNC_FIXTURE_DIR) + "/" + relative_path;
}

std::vector<Bytes> load_hex_fixture(const std::string& relative_path) {
    std::ifstream in(fixture_path(relative_path));
    if (!in) throw std::runtime_error("missing fixture " + fixture_path(relative_path));
    std::vector<Bytes> out;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        out.push_back(hex_decode(line));
    }
    return out;
}

std::vector<std::string> list_hex_fixtures(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(fixture_path(dir))) {
        if (entry.path().extension() == ".hex")
            out.push_back(dir + "/" + entry.path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace authsync::test
