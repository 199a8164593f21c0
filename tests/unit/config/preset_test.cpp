// `- preset: NAME` mappings: the shipped presets parse, and mistakes in a config or a preset
// file are named with their file and line.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
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

std::string head(const std::string& presets_dir = AUTHSYNC_CONF_DIR "/presets") {
    return "source: {dsn: \"host=a\"}\ntarget: {dsn: \"host=b\"}\npresets_dir: \"" + presets_dir +
           "\"\nmappings:\n";
}

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

// A temporary presets directory holding one preset file.
struct PresetDir {
    std::filesystem::path dir;
    explicit PresetDir(const std::string& name, const std::string& text) {
        char tmpl[] = "/tmp/authsync-presets-XXXXXX";
        dir = ::mkdtemp(tmpl);
        std::ofstream(dir / (name + ".yaml")) << text;
    }
    ~PresetDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

const std::string kMinimalPreset = R"(preset: mini
options:
  tenant: {required: true}
lookups:
  tenant_id: SELECT id::text FROM tenants WHERE name = {{tenant}}
sources:
  - source: people
    mirror: mini_people
    key: id
    columns: {id: text, tenant_id: text, name: text, note: {type: text, optional: true}}
    row_filter: 'tenant_id = {{tenant_id}}::uuid AND price > 0'
    row_filter_columns: [tenant_id]
    affects:
      users: changed.id
targets:
  - name: users
    table: neon_auth.users_sync
    kind: users
    all_keys: SELECT id FROM authsync.mini_people
    compute: SELECT a.key AS id, jsonb_build_object('id', a.key, 'cost', '$$5') AS raw_json FROM affected AS a
)";

}  // namespace

TEST_CASE("the stack-auth preset parses with a project id", "[config][preset]") {
    auto c = parse(head() + "  - preset: stack-auth\n    preset_options: {project_id: \"p'1\"}\n");
    CHECK(c.mappings.empty());
    REQUIRE(c.composites.size() == 1);
    const auto& rule = c.composites[0];
    CHECK(rule.preset == "stack-auth");
    CHECK(rule.sources.size() == 10);
    CHECK(rule.targets.size() == 4);
    REQUIRE(rule.lookups.size() == 1);
    // Option values go in as quoted literals; the branch takes its default.
    CHECK_THAT(rule.lookups[0].second, Contains("\"projectId\" = 'p''1'"));
    CHECK_THAT(rule.lookups[0].second, Contains("\"branchId\" = 'main'"));
    // The tenancy is known only once looked up on the provider.
    CHECK_FALSE(rule.resolved());
    for (const auto& s : rule.sources) {
        CHECK_THAT(s.row_filter, Contains("{{tenancy_id}}"));
        // Secrets are never mirrored, so never published.
        CHECK(s.column("passwordHash") == nullptr);
        CHECK(s.column("totpSecret") == nullptr);
        for (const auto& a : s.affects) CHECK_THAT(a.target, StartsWith("neon_auth."));
    }
    CHECK(rule.target("users")->kind == mapping::TargetKind::Users);
    CHECK(rule.target("permissions")->group_column == "user_id");
}

TEST_CASE("preset options are checked against the preset", "[config][preset]") {
    auto e = error_of(head() + "  - preset: stack-auth\n");
    CHECK_THAT(e, Contains("preset stack-auth needs preset_options.project_id"));
    e = error_of(head() + "  - preset: stack-auth\n    preset_options: {projct_id: x}\n");
    CHECK_THAT(e, StartsWith("t.yaml:6:22: unknown option \"projct_id\" for preset stack-auth"));
    CHECK_THAT(e, Contains("did you mean \"project_id\""));
    e = error_of(head() +
                 "  - preset: stack-auth\n    preset_options: {project_id: x}\n    fields: {}\n");
    CHECK_THAT(e, Contains("unknown key \"fields\" in mappings[0]"));
}

TEST_CASE("an unknown preset names where it was looked for", "[config][preset]") {
    auto e = error_of(head("/nonexistent") + "  - preset: keyclock\n");
    CHECK_THAT(e, Contains("no preset \"keyclock\" (looked for keyclock.yaml in /nonexistent)"));
    e = error_of(head() + "  - preset: ../etc/passwd\n");
    CHECK_THAT(e, Contains("is not a preset name"));
}

TEST_CASE(
    "presets come from one directory: configured, $AUTHSYNC_PRESETS_DIR, the build's "
    "tree for an uninstalled binary, else the installed one",
    "[config][preset]") {
    const config::EnvLookup none = [](const std::string&) { return std::optional<std::string>(); };
    const config::EnvLookup with_var = [](const std::string& name) {
        return name == "AUTHSYNC_PRESETS_DIR" ? std::optional<std::string>("/from/env")
                                              : std::optional<std::string>();
    };
    const config::EnvLookup empty_var = [](const std::string&) {
        return std::optional<std::string>("");
    };
    const std::string installed = "/usr/local/bin/authsync";
    const std::string uninstalled = AUTHSYNC_BUILD_DIR "/authsync";
    CHECK(config::presets_directory("/p", with_var, uninstalled) == "/p");
    CHECK(config::presets_directory("", with_var, uninstalled) == "/from/env");
    CHECK(config::presets_directory("", none, uninstalled) == AUTHSYNC_CONF_DIR "/presets");
    CHECK(config::presets_directory("", none, AUTHSYNC_BUILD_DIR "/tests/unit_tests") ==
          AUTHSYNC_CONF_DIR "/presets");
    CHECK(config::presets_directory("", none, installed) == AUTHSYNC_INSTALLED_PRESETS_DIR);
    CHECK(config::presets_directory("", empty_var, installed) == AUTHSYNC_INSTALLED_PRESETS_DIR);
    // Beside the build directory, or reached through "..", is not inside it.
    CHECK(config::presets_directory("", none, AUTHSYNC_BUILD_DIR "-copy/authsync") ==
          AUTHSYNC_INSTALLED_PRESETS_DIR);
    CHECK(config::presets_directory("", none, AUTHSYNC_BUILD_DIR "/../authsync") ==
          AUTHSYNC_INSTALLED_PRESETS_DIR);
    CHECK(config::presets_directory("", none, "") == AUTHSYNC_INSTALLED_PRESETS_DIR);
    // Never the working directory or the config's: nothing relative comes out by default.
    CHECK(config::presets_directory("", none, installed).front() == '/');
}

TEST_CASE("a preset beside the config file is not read", "[config][preset]") {
    // DIR/authsync.yaml with DIR/presets/mini.yaml beside it: mini stays unknown.
    char tmpl[] = "/tmp/authsync-beside-XXXXXX";
    const std::filesystem::path dir = ::mkdtemp(tmpl);
    std::filesystem::create_directory(dir / "presets");
    std::ofstream(dir / "presets" / "mini.yaml") << kMinimalPreset;
    std::string e;
    try {
        config::parse_config(
            "source: {dsn: \"host=a\"}\ntarget: {dsn: \"host=b\"}\nmappings:\n"
            "  - preset: mini\n    preset_options: {tenant: a}\n",
            (dir / "authsync.yaml").string(), kNoEnv);
    } catch (const ConfigError& err) {
        e = err.what();
    }
    std::filesystem::remove_all(dir);
    CHECK_THAT(e, Contains("no preset \"mini\""));
}

TEST_CASE("a preset's tables cannot also be mapped alone, nor its targets written twice",
          "[config][preset]") {
    PresetDir d("mini", kMinimalPreset);
    const auto preset = "  - preset: mini\n    preset_options: {tenant: a}\n";
    auto e = error_of(head(d.dir) + preset +
                      "  - source: people\n    key: id\n    fields: {name: name}\n");
    CHECK_THAT(e, Contains("duplicate mapping for source table public.people"));
    e = error_of(head(d.dir) + preset +
                 "  - source: others\n    key: id\n    fields: {name: name}\n");
    CHECK_THAT(e, Contains("target neon_auth.users_sync is written both by preset mini and by "
                           "the mapping of public.others"));
}

TEST_CASE("a preset file's SQL is taken as written: no ${VAR} expansion", "[config][preset]") {
    PresetDir d("mini", kMinimalPreset);
    auto c = parse(head(d.dir) + "  - preset: mini\n    preset_options: {tenant: a}\n");
    REQUIRE(c.composites.size() == 1);
    const auto& rule = c.composites[0];
    CHECK_THAT(rule.targets[0].compute, Contains("'$$5'"));
    CHECK(rule.sources[0].row_filter == "tenant_id = {{tenant_id}}::uuid AND price > 0");
    CHECK(rule.sources[0].columns[3].optional);
    CHECK(rule.sources[0].row_filter_columns == std::vector<std::string>{"tenant_id"});
    CHECK(rule.lookups[0].second == "SELECT id::text FROM tenants WHERE name = 'a'");
    CHECK(rule.preset_file == (d.dir / "mini.yaml").string());
}

TEST_CASE("mistakes in a preset file are reported in that file", "[config][preset]") {
    auto broken = [](const std::string& from, const std::string& to) {
        std::string text = kMinimalPreset;
        auto pos = text.find(from);
        REQUIRE(pos != std::string::npos);
        return text.replace(pos, from.size(), to);
    };
    const auto mapping = std::string("  - preset: mini\n    preset_options: {tenant: a}\n");
    {
        PresetDir d("mini", broken("users: changed.id", "people: changed.id"));
        auto e = error_of(head(d.dir) + mapping);
        CHECK_THAT(e, StartsWith((d.dir / "mini.yaml").string() + ":"));
        CHECK_THAT(e, Contains("affects \"people\", which is not a target"));
    }
    {
        PresetDir d("mini", broken("key: id", "key: uid"));
        CHECK_THAT(error_of(head(d.dir) + mapping),
                   Contains("key column \"uid\" is not among the columns"));
    }
    {
        PresetDir d("mini", broken("kind: users", "kind: people"));
        CHECK_THAT(error_of(head(d.dir) + mapping), Contains("kind"));
    }
    {
        PresetDir d("mini", broken("{{tenant_id}}", "{{tenancy}}"));
        CHECK_THAT(error_of(head(d.dir) + mapping),
                   Contains("uses {{tenancy}}, which is neither an option nor a lookup"));
    }
    {
        PresetDir d("mini", broken("    row_filter_columns: [tenant_id]\n", ""));
        CHECK_THAT(error_of(head(d.dir) + mapping),
                   Contains("a row_filter needs row_filter_columns"));
    }
    {
        PresetDir d("mini",
                    broken("row_filter_columns: [tenant_id]", "row_filter_columns: [tenant]"));
        CHECK_THAT(error_of(head(d.dir) + mapping),
                   Contains("row filter column \"tenant\" is not a mirrored column"));
    }
    {
        PresetDir d("mini", broken("    mirror: mini_people\n", ""));
        CHECK_THAT(error_of(head(d.dir) + mapping), Contains("missing required key \"mirror\""));
    }
}

TEST_CASE("presets need the initial copy", "[config][preset]") {
    auto e = error_of(
        "source: {dsn: \"host=a\", snapshot: never}\ntarget: {dsn: \"host=b\"}\n"
        "presets_dir: \"" AUTHSYNC_CONF_DIR
        "/presets\"\nmappings:\n"
        "  - preset: stack-auth\n    preset_options: {project_id: p}\n");
    CHECK_THAT(e, Contains("source.snapshot: never cannot be used with preset stack-auth"));
}

TEST_CASE("a preset file names itself; option values stay data", "[config][preset]") {
    PresetDir d("other", kMinimalPreset);  // says "preset: mini"
    CHECK_THAT(error_of(head(d.dir) + "  - preset: other\n    preset_options: {tenant: a}\n"),
               Contains("says it is preset \"mini\", not \"other\""));
    PresetDir m("mini", kMinimalPreset);
    CHECK_THAT(error_of(head(m.dir) +
                        "  - preset: mini\n    preset_options: {tenant: \"{{tenant_id}}\"}\n"),
               Contains("\"{{\" is not allowed in an option's value"));
}

TEST_CASE("the supabase preset parses: auth.users, secrets left out", "[config][preset]") {
    auto c = parse(head() + "  - preset: supabase\n");
    REQUIRE(c.composites.size() == 1);
    const auto& rule = c.composites[0];
    REQUIRE(rule.sources.size() == 1);
    const auto& users = rule.sources[0];
    CHECK(users.source_name() == "auth.users");
    CHECK(users.column("encrypted_password") == nullptr);
    CHECK(users.column("confirmation_token") == nullptr);
    REQUIRE(users.column("is_anonymous") != nullptr);
    CHECK(users.column("is_anonymous")->optional);  // older Supabase lacks it
    CHECK(rule.resolved());
    CHECK(rule.target("users")->target_name() == "neon_auth.users_sync");
}

TEST_CASE("identifier options rename tables and columns", "[config][preset]") {
    auto c = parse(head() + "  - preset: better-auth\n");
    REQUIRE(c.composites.size() == 1);
    auto rule = c.composites[0];
    CHECK(rule.sources[0].source_name() == "public.user");
    CHECK(rule.sources[0].column("emailVerified") != nullptr);
    CHECK_THAT(rule.targets[0].compute, Contains("u.\"createdAt\""));

    c = parse(head() +
              "  - preset: better-auth\n    preset_options: {user_table: users, "
              "created_at: created_at, email_verified: email_verified}\n");
    rule = c.composites[0];
    CHECK(rule.sources[0].source_name() == "public.users");
    CHECK(rule.sources[0].column("email_verified") != nullptr);
    CHECK(rule.sources[0].column("emailVerified") == nullptr);
    CHECK_THAT(rule.targets[0].compute, Contains("u.\"created_at\""));
    CHECK_THAT(rule.targets[0].compute, !Contains("<<"));

    // Names only: nothing that could change the file's or the SQL's structure.
    CHECK_THAT(error_of(head() + "  - preset: better-auth\n    preset_options: {user_table: "
                                 "'users\" x'}\n"),
               Contains("preset_options.user_table must be a table or column name"));
}

TEST_CASE("the keycloak preset needs a realm and scopes by it", "[config][preset]") {
    CHECK_THAT(error_of(head() + "  - preset: keycloak\n"),
               Contains("preset keycloak needs preset_options.realm"));
    auto c = parse(head() + "  - preset: keycloak\n    preset_options: {realm: acme}\n");
    REQUIRE(c.composites.size() == 1);
    auto rule = c.composites[0];
    CHECK(rule.lookups.at(0).second == "SELECT id FROM \"public\".realm WHERE name = 'acme'");
    CHECK_FALSE(rule.resolved());
    rule.resolve({{"realm_id", "r-1"}});
    CHECK(rule.sources[0].mirror_filter == "x.realm_id = 'r-1'");
    CHECK_THAT(rule.targets[0].compute, Contains("'acme'::text"));
}

TEST_CASE("the generic preset needs a table; its columns are renamed by options",
          "[config][preset]") {
    CHECK_THAT(error_of(head() + "  - preset: generic\n"),
               Contains("preset generic needs preset_options.table"));
    auto c = parse(head() +
                   "  - preset: generic\n    preset_options: {table: members, "
                   "id_column: member_id}\n");
    const auto& s = c.composites.at(0).sources.at(0);
    CHECK(s.source_name() == "public.members");
    CHECK(s.mirror_table == "generic_members");
    CHECK(s.key_columns == std::vector<std::string>{"member_id"});
    CHECK(s.column("email")->optional);
}

TEST_CASE("a preset source's scope names a mirrored column and a lookup or option",
          "[config][preset]") {
    auto with_scope = [](const std::string& scope) {
        std::string text = kMinimalPreset;
        const std::string anchor = "    row_filter_columns: [tenant_id]\n";
        text.replace(text.find(anchor), anchor.size(), anchor + "    scope: " + scope + "\n");
        return text;
    };
    const auto preset = "  - preset: mini\n    preset_options: {tenant: a}\n";
    {
        PresetDir d("mini", with_scope("{tenant_id: tenant_id}"));
        auto c = parse(head(d.dir) + preset);
        const auto& s = c.composites[0].sources[0];
        REQUIRE(s.scope.size() == 1);
        CHECK(s.scope[0] == std::pair<std::string, std::string>{"tenant_id", "tenant_id"});
    }
    {
        // An option's value serves as well as a lookup's.
        PresetDir d("mini", with_scope("{name: tenant}"));
        auto c = parse(head(d.dir) + preset);
        auto rule = c.composites[0];
        rule.resolve({{"tenant_id", "t-1"}});
        CHECK(rule.sources[0].scope_values ==
              std::vector<std::pair<std::string, std::string>>{{"name", "a"}});
    }
    {
        PresetDir d("mini", with_scope("{tenant_id: nobody}"));
        CHECK_THAT(error_of(head(d.dir) + preset),
                   Contains("scope of \"tenant_id\" names \"nobody\", which is neither a lookup "
                            "nor an option"));
    }
    {
        PresetDir d("mini", with_scope("{colour: tenant_id}"));
        CHECK_THAT(error_of(head(d.dir) + preset),
                   Contains("scope column \"colour\" is not a mirrored column"));
    }
}
