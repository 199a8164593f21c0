#include "preset_support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "fixtures.hpp"

namespace authsync::test {

std::string read_preset_fixture(const std::string& dir, const std::string& name) {
    std::ifstream in(fixture_path(dir + "/" + name));
    REQUIRE(in);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::map<std::string, std::string> reference_queries(const std::string& dir) {
    std::map<std::string, std::string> out;
    std::istringstream in(read_preset_fixture(dir, "reference.sql"));
    std::string line, current;
    while (std::getline(in, line)) {
        if (line.rfind("-- name: ", 0) == 0) {
            current = line.substr(9);
            continue;
        }
        if (!current.empty()) out[current] += line + "\n";
    }
    return out;
}

Rows sorted_rows(const pg::Result& r) {
    Rows rows;
    for (int i = 0; i < r.rows(); ++i) {
        std::vector<std::string> row;
        for (int c = 0; c < r.columns(); ++c) {
            row.push_back(r.is_null(i, c) ? "<null>" : std::string(r.get(i, c)));
        }
        rows.push_back(std::move(row));
    }
    std::sort(rows.begin(), rows.end());
    return rows;
}

void require_same_rows(const std::string& what, const Rows& expected, const Rows& actual) {
    INFO(what << ": " << expected.size() << " rows expected");
    if (expected == actual) {
        SUCCEED();
        return;
    }
    std::size_t i = 0;
    while (i < expected.size() && i < actual.size() && expected[i] == actual[i]) ++i;
    std::string ev, av;
    if (i < expected.size()) {
        for (const auto& v : expected[i]) ev += v + " | ";
    }
    if (i < actual.size()) {
        for (const auto& v : actual[i]) av += v + " | ";
    }
    FAIL(what << ": first difference at row " << i << " of " << expected.size() << " expected / "
              << actual.size() << " actual\nexpected: " << ev << "\nactual:   " << av);
}

void replace_in_config(SyncFixture& f, const std::string& from, const std::string& to) {
    std::string config;
    {
        std::ifstream in(f.config_path());
        std::stringstream ss;
        ss << in.rdbuf();
        config = ss.str();
    }
    const auto at = config.find(from);
    REQUIRE(at != std::string::npos);
    config.replace(at, from.size(), to);
    std::ofstream(f.config_path()) << config;
}

int run_with_kills(SyncFixture& f, const std::string& workload_sql, int max_kills,
                   std::chrono::milliseconds interval) {
    std::atomic<bool> done{false};
    std::string workload_error;
    std::thread workload([&] {
        try {
            f.provider().exec(workload_sql);
        } catch (const std::exception& e) {
            workload_error = e.what();
        }
        done = true;
    });
    int kills = 0;
    while (!done && kills < max_kills) {
        std::this_thread::sleep_for(interval);
        f.kill9();
        ++kills;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        f.start_unchecked();
    }
    workload.join();
    REQUIRE(workload_error.empty());
    // The last restart may be a moment old: a SIGTERM before authsync has installed its
    // handler would kill it (exit 143) rather than stop it.
    f.wait_streaming();
    return kills;
}

}  // namespace authsync::test
