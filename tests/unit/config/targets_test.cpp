// The `targets:` form (fan-out): each target with its name, dsn and mappings; the `target:`
// form is one target named "default". Mistakes are named with file, line and column.
#include <catch2/catch.hpp>

#include <string>

#include "authsync/config/config.hpp"
#include "authsync/core/error.hpp"

using namespace authsync;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

const config::EnvLookup kNoEnv = [](const std::string&) -> std::optional<std::string> {
    return std::nullopt;
};

config::Config parse(const std::string& yaml) {
    return config::parse_config(yaml, "t.yaml", kNoEnv);
}

std::string error_of(const std::string& yaml) {
    try {
        parse(yaml);
    } catch (const ConfigError& e) {
        return e.what();
    }
    FAIL("no ConfigError for:\n" << yaml);
    return {};
}

const std::string kSource =
    "source: {dsn: \"host=a\"}\npresets_dir: \"" AUTHSYNC_CONF_DIR "/presets\"\n";

// A target entry of the list, with a table mapping of `table`.
std::string target(const std::string& name, const std::string& dsn,
                   const std::string& table = "users") {
    return "  - name: " + name + "\n    dsn: \"" + dsn +
           "\"\n    mappings:\n      - source: " + table +
           "\n        key: id\n        fields: {name: name}\n";
}

}  // namespace

TEST_CASE("the target: form is one target named default", "[config][targets]") {
    auto c = parse(kSource +
                   "target: {dsn: \"host=b\"}\nmappings:\n  - source: users\n    key: "
                   "id\n    fields: {name: name}\n");
    REQUIRE(c.targets.size() == 1);
    CHECK(c.targets[0].name == "default");
    CHECK(c.targets[0].target.dsn == "host=b");
    REQUIRE(c.targets[0].mappings.size() == 1);
    CHECK(c.targets[0].mappings[0].source_name() == "public.users");
    CHECK(c.targets[0].location == "t.yaml:3:1");
    // The fields of the one target are those of the config itself.
    CHECK(c.target.dsn == "host=b");
    CHECK(c.mappings.size() == 1);
}

TEST_CASE("targets: each target has its own dsn and mappings", "[config][targets]") {
    auto c = parse(kSource + "targets:\n" + target("tenant-a", "host=b dbname=a") +
                   "  - name: tenant_b\n    dsn: \"host=b dbname=b\"\n    mappings:\n"
                   "      - preset: stack-auth\n        preset_options: {project_id: p-b}\n");
    REQUIRE(c.targets.size() == 2);
    CHECK(c.targets[0].name == "tenant-a");
    CHECK(c.targets[0].target.dsn == "host=b dbname=a");
    CHECK(c.targets[0].mappings.size() == 1);
    CHECK(c.targets[0].composites.empty());
    CHECK(c.targets[0].location == "t.yaml:4:5");
    CHECK(c.targets[1].name == "tenant_b");
    CHECK(c.targets[1].mappings.empty());
    REQUIRE(c.targets[1].composites.size() == 1);
    CHECK(c.targets[1].composites[0].preset == "stack-auth");
    CHECK(c.targets[1].location == "t.yaml:10:5");
    // The config's own target is the first; for_target gives any other's.
    CHECK(c.target.dsn == "host=b dbname=a");
    auto b = c.for_target(1);
    CHECK(b.target.dsn == "host=b dbname=b");
    CHECK(b.mappings.empty());
    REQUIRE(b.composites.size() == 1);
    CHECK(b.source.dsn == "host=a");
    REQUIRE(b.targets.size() == 1);
    CHECK(b.targets[0].name == "tenant_b");
}

TEST_CASE("each target's preset options are its own", "[config][targets]") {
    auto preset = [](const std::string& name, const std::string& db, const std::string& options) {
        return "  - name: " + name + "\n    dsn: \"dbname=" + db +
               "\"\n    mappings:\n      - preset: stack-auth\n" + options;
    };
    auto c = parse(kSource + "targets:\n" +
                   preset("a", "a", "        preset_options: {project_id: pa}\n") +
                   preset("b", "b", "        preset_options: {project_id: pb, branch: dev}\n"));
    CHECK(c.targets[0].composites[0].options.at("project_id") == "pa");
    CHECK(c.targets[1].composites[0].options.at("project_id") == "pb");
    CHECK(c.targets[1].composites[0].options.at("branch") == "dev");
    // An option missing for one target is an error at that target's mapping.
    auto e = error_of(kSource + "targets:\n" +
                      preset("a", "a", "        preset_options: {project_id: pa}\n") +
                      preset("b", "b", ""));
    CHECK_THAT(e, StartsWith("t.yaml:"));
    CHECK_THAT(e, Contains("preset stack-auth needs preset_options.project_id"));
}

TEST_CASE("targets: mistakes are located", "[config][targets]") {
    SECTION("a duplicate name points at the second, naming the first's line") {
        auto e =
            error_of(kSource + "targets:\n" + target("a", "dbname=x") + target("a", "dbname=y"));
        CHECK_THAT(e, StartsWith("t.yaml:10:11: targets[1]: duplicate target name \"a\" (first "
                                 "at line 4)"));
    }
    SECTION("a name that cannot label a metric") {
        auto e = error_of(kSource + "targets:\n" + target("Tenant.A", "dbname=x"));
        CHECK_THAT(e, StartsWith("t.yaml:4:11: targets[0].name must be 1 to 63 lowercase"));
        e = error_of(kSource + "targets:\n" + target("-a", "dbname=x"));
        CHECK_THAT(e, Contains("targets[0].name must be"));
    }
    SECTION("a target without a dsn or mappings") {
        auto e = error_of(kSource + "targets:\n  - name: a\n    mappings: []\n");
        CHECK_THAT(e, Contains("missing required key \"dsn\" in targets[0]"));
        e = error_of(kSource + "targets:\n  - name: a\n    dsn: x\n");
        CHECK_THAT(e, Contains("missing required key \"mappings\" in targets[0]"));
        e = error_of(kSource + "targets:\n  - name: a\n    dsn: x\n    mappings: []\n");
        CHECK_THAT(e, Contains("targets[0].mappings must not be empty"));
    }
    SECTION("a mistake inside a target's mapping names its path") {
        auto e = error_of(kSource +
                          "targets:\n  - name: a\n    dsn: x\n    mappings:\n      - source: users"
                          "\n        key: id\n        fields: {name: name}\n        colour: red\n");
        CHECK_THAT(e, Contains("unknown key \"colour\" in targets[0].mappings[0]"));
    }
    SECTION("an empty list, a list of strings, an unknown key") {
        CHECK_THAT(error_of(kSource + "targets: []\n"), Contains("targets must not be empty"));
        CHECK_THAT(error_of(kSource + "targets: [a]\n"),
                   Contains("targets[0] must be a mapping with name, dsn and mappings"));
        CHECK_THAT(error_of(kSource + "targets:\n" + target("a", "x") + "    lanes: 2\n"),
                   Contains("unknown key \"lanes\" in targets[0]"));
    }
    SECTION("target: or mappings: beside targets: is refused") {
        auto e = error_of(kSource + "target: {dsn: b}\ntargets:\n" + target("a", "x"));
        CHECK_THAT(e,
                   StartsWith("t.yaml:3:1: \"target\" cannot be used with \"targets\" (line 4)"));
        e = error_of(kSource + "targets:\n" + target("a", "x") +
                     "mappings:\n  - source: users\n    key: id\n    fields: {name: name}\n");
        CHECK_THAT(e, Contains("\"mappings\" cannot be used with \"targets\""));
    }
    SECTION("a preset with snapshot: never, in any target") {
        auto e =
            error_of("source: {dsn: \"host=a\", snapshot: never}\npresets_dir: \"" AUTHSYNC_CONF_DIR
                     "/presets\"\ntargets:\n" +
                     target("a", "dbname=a") +
                     "  - name: b\n    dsn: dbname=b\n    mappings:\n      - preset: stack-auth\n"
                     "        preset_options: {project_id: p}\n");
        CHECK_THAT(e, Contains("source.snapshot: never cannot be used with preset stack-auth"));
    }
}

TEST_CASE("a mapping's scope is read as column -> value", "[config][targets]") {
    auto c = parse(kSource +
                   "targets:\n  - name: a\n    dsn: x\n    mappings:\n      - source: users\n"
                   "        key: id\n        scope: {tenant_id: acme, region: eu}\n"
                   "        fields: {name: name}\n");
    const auto& scope = c.targets[0].mappings[0].scope;
    REQUIRE(scope.size() == 2);
    CHECK(scope[0] == std::pair<std::string, std::string>{"tenant_id", "acme"});
    CHECK(scope[1] == std::pair<std::string, std::string>{"region", "eu"});
    auto e = error_of(kSource +
                      "targets:\n  - name: a\n    dsn: x\n    mappings:\n      - source: users\n"
                      "        key: id\n        scope: {tenant_id: [a, b]}\n"
                      "        fields: {name: name}\n");
    CHECK_THAT(e, Contains("targets[0].mappings[0].scope.tenant_id must be a value"));
}

TEST_CASE("the stack-auth preset scopes its tenancy's tables", "[config][targets]") {
    auto c = parse(kSource +
                   "targets:\n  - name: a\n    dsn: x\n    mappings:\n"
                   "      - preset: stack-auth\n"
                   "        preset_options: {project_id: p}\n");
    int scoped = 0;
    for (const auto& s : c.targets[0].composites[0].sources) {
        for (const auto& [column, name] : s.scope) {
            CHECK(column == "tenancyId");
            CHECK(name == "tenancy_id");
            ++scoped;
        }
    }
    CHECK(scoped >= 9);
    // Resolved, each scope holds the lookup's value.
    auto rule = c.targets[0].composites[0];
    rule.resolve({{"tenancy_id", "11111111-2222-3333-4444-555555555555"}});
    for (const auto& s : rule.sources) {
        CHECK(s.scope_values.size() == s.scope.size());
        for (const auto& [column, value] : s.scope_values) {
            CHECK(value == "11111111-2222-3333-4444-555555555555");
        }
    }
}

TEST_CASE("fanout.max_target_lag takes seconds, bytes or both; unset, nothing is detached",
          "[config][targets]") {
    const auto list =
        "targets:\n" + target("a", "host=b dbname=a") + target("b", "host=b dbname=b");
    auto plain = parse(kSource + list);
    CHECK_FALSE(plain.fanout.detaches());
    auto both = parse(kSource + list + "fanout:\n  max_target_lag: {seconds: 300, bytes: 1GB}\n");
    CHECK(both.fanout.max_target_lag_seconds == std::chrono::seconds(300));
    CHECK(both.fanout.max_target_lag_bytes == std::size_t{1} << 30);
    auto seconds = parse(kSource + list + "fanout: {max_target_lag: {seconds: 5}}\n");
    CHECK(seconds.fanout.detaches());
    CHECK_FALSE(seconds.fanout.max_target_lag_bytes);
    // Kept by a target's own config (the session's).
    CHECK(seconds.for_target(1).fanout.max_target_lag_seconds == std::chrono::seconds(5));
    // A subset of the targets: the top-level fields become the first kept one's.
    auto second = seconds.with_targets([](const auto& t) { return t.name == "b"; });
    REQUIRE(second.targets.size() == 1);
    CHECK(second.target.dsn == "host=b dbname=b");
    CHECK_THROWS_AS(seconds.with_targets([](const auto&) { return false; }), ConfigError);

    CHECK_THAT(error_of(kSource + list + "fanout:\n  max_target_lag: {}\n"),
               StartsWith("t.yaml:") && Contains("fanout.max_target_lag needs seconds, bytes"));
    CHECK_THAT(error_of(kSource + list + "fanout:\n  max_target_lag: {seconds: 0}\n"),
               Contains("fanout.max_target_lag.seconds must be a positive integer"));
    CHECK_THAT(error_of(kSource + list + "fanout:\n  max_target_lag: {minutes: 3}\n"),
               Contains("minutes"));
    CHECK_THAT(error_of(kSource + list + "fanout:\n  max_target_lag: {bytes: 3 apples}\n"),
               Contains("fanout.max_target_lag.bytes"));
    // A detached target comes back by a copy: a slot made without one cannot give it.
    CHECK_THAT(error_of("source: {dsn: \"host=a\", snapshot: never}\n" + list +
                        "fanout: {max_target_lag: {seconds: 5}}\n"),
               Contains("cannot be used with source.snapshot: never"));
}
