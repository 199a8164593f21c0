// `targets:` checks that need libpq's DSN parsing: two targets may not share a database.
#include <catch2/catch.hpp>

#include "authsync/cli/commands.hpp"
#include "authsync/core/error.hpp"

using namespace authsync;
using Catch::Matchers::Contains;

namespace {

config::Config with_targets(std::vector<std::pair<std::string, std::string>> targets) {
    config::Config c;
    int line = 4;
    for (auto& [name, dsn] : targets) {
        c.targets.push_back({.name = name,
                             .target = {.dsn = dsn},
                             .location = "t.yaml:" + std::to_string(line) + ":5"});
        line += 6;
    }
    return c;
}

}  // namespace

TEST_CASE("two targets naming the same database are refused, with both located", "[cli][targets]") {
    auto c = with_targets({{"a", "host=h port=5433 dbname=app password=s1"},
                           {"b", "host=h dbname=other"},
                           {"c", "postgresql://u:s2@h:5433/app"}});
    try {
        cli::check_targets(c);
        FAIL("no ConfigError");
    } catch (const ConfigError& e) {
        const std::string m = e.what();
        CHECK_THAT(m, Contains("t.yaml:16:5: target c names the same database as target a "
                               "(t.yaml:4:5)"));
        CHECK_THAT(m, !Contains("s1") && !Contains("s2"));
    }
}

TEST_CASE("a target whose DSN does not parse is named by its index", "[cli][targets]") {
    auto c = with_targets({{"a", "dbname=a"}, {"b", "host='open"}});
    CHECK_THROWS_WITH(cli::check_targets(c), Contains("targets[1].dsn: invalid connection string"));
    // The one target of the `target:` form keeps its old name in messages.
    auto one = with_targets({{"default", "host='open"}});
    CHECK_THROWS_WITH(cli::check_targets(one), Contains("target.dsn: invalid connection string"));
}
