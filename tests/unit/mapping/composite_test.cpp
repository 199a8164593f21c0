#include "authsync/mapping/composite.hpp"

#include <catch2/catch.hpp>

#include "../pgoutput/decoded_fixture.hpp"
#include "authsync/core/error.hpp"

using namespace authsync;
using namespace authsync::mapping;
using authsync::pgoutput::ColumnKind;
using authsync::pgoutput::Message;
using authsync::test::line;
using Catch::Contains;

namespace {

// Mirrors public.users of the captured fixtures (id integer PK, name, email, created_at,
// metadata, active, bio).
MirrorSource users_mirror() {
    MirrorSource s;
    s.source_table = "users";
    s.mirror_table = "m_users";
    s.key_columns = {"id"};
    s.columns = {{"id", "text"}, {"name", "text"}, {"bio", "text"}, {"metadata", "jsonb"}};
    s.affects = {{"neon_auth.users_sync", "changed.id", ""}};
    return s;
}

}  // namespace

TEST_CASE("a mirror binds columns by name and maps a captured insert", "[composite]") {
    const auto m = test::decode_fixture("insert");
    const auto mirror = BoundMirror::bind(users_mirror(), line<pgoutput::Relation>(m, 2));
    const auto row = mirror.map_new(line<pgoutput::Insert>(m, 3).new_tuple, nullptr);
    REQUIRE(row.values.size() == 4);
    CHECK_FALSE(row.partial());
    CHECK(row.values[0] == std::optional<std::string>("1"));
    CHECK(row.values[1] == std::optional<std::string>("alice"));
    CHECK(mirror.key_of(row) == std::vector<std::string>{"1"});
    CHECK(mirror.key_indexes() == std::vector<std::size_t>{0});
}

TEST_CASE("an unchanged TOAST column is absent from the mirror row, never NULL", "[composite]") {
    const auto m = test::decode_fixture("toast_unchanged");
    const auto& update = line<pgoutput::Update>(m, 3);
    REQUIRE(update.new_tuple.at(6).kind == ColumnKind::UnchangedToast);
    auto source = users_mirror();
    const auto mirror = BoundMirror::bind(source, line<pgoutput::Relation>(m, 2));
    const auto row = mirror.map_new(update.new_tuple, nullptr);
    CHECK(row.partial());
    CHECK(row.present == std::vector<bool>{true, true, false, true});
    CHECK(row.values[1] == std::optional<std::string>("alice2"));
    CHECK_FALSE(row.values[2].has_value());

    // Merged over a full row, the earlier value of the absent column stays.
    MirrorRow full{{"1", "alice", "long bio", "{}"}, {true, true, true, true}};
    full.merge_from(row);
    CHECK_FALSE(full.partial());
    CHECK(full.values[1] == std::optional<std::string>("alice2"));
    CHECK(full.values[2] == std::optional<std::string>("long bio"));
}

TEST_CASE("a key change gives the old key from the old tuple", "[composite]") {
    const auto m = test::decode_fixture("key_change");
    const auto mirror = BoundMirror::bind(users_mirror(), line<pgoutput::Relation>(m, 2));
    const auto& update = line<pgoutput::Update>(m, 3);
    REQUIRE(update.old_kind != pgoutput::OldTupleKind::None);
    CHECK(mirror.key_of_old(update.old_tuple) == std::vector<std::string>{"1"});
    CHECK(mirror.key_of(mirror.map_new(update.new_tuple, &update.old_tuple)) ==
          std::vector<std::string>{"100"});
}

TEST_CASE("binding a mirror names what is missing", "[composite]") {
    const auto m = test::decode_fixture("insert");
    const auto& rel = line<pgoutput::Relation>(m, 2);
    auto source = users_mirror();
    source.columns.push_back({"signed_up_at", "timestamp", false});
    CHECK_THROWS_WITH(BoundMirror::bind(source, rel),
                      Contains("column \"signed_up_at\" of public.users is not in the stream"));

    // Optional: absent on this provider, mirrored as NULL.
    source.columns.back().optional = true;
    const auto mirror = BoundMirror::bind(source, rel);
    const auto row = mirror.map_new(line<pgoutput::Insert>(m, 3).new_tuple, nullptr);
    CHECK(row.present.back());
    CHECK_FALSE(row.values.back().has_value());

    auto other = users_mirror();
    other.source_table = "accounts";
    CHECK_THROWS_WITH(BoundMirror::bind(other, rel), Contains("is not the mirrored table"));
}

TEST_CASE("a tuple of the wrong width is an error, not a crash", "[composite]") {
    const auto m = test::decode_fixture("insert");
    const auto mirror = BoundMirror::bind(users_mirror(), line<pgoutput::Relation>(m, 2));
    auto tuple = line<pgoutput::Insert>(m, 3).new_tuple;
    tuple.pop_back();
    CHECK_THROWS_AS(mirror.map_new(tuple, nullptr), MappingError);
    CHECK_THROWS_AS(mirror.key_of_old(tuple), MappingError);
    // A null key column in a new tuple.
    auto null_key = line<pgoutput::Insert>(m, 3).new_tuple;
    null_key[0] = pgoutput::TupleColumn{ColumnKind::Null, ""};
    CHECK_THROWS_WITH(mirror.map_new(null_key, nullptr), Contains("key column \"id\""));
}

TEST_CASE("placeholders are replaced by quoted literals, others left", "[composite]") {
    std::map<std::string, std::string> values{{"project_id", "it's"}};
    CHECK(substitute("\"p\" = {{project_id}} AND t = {{tenancy_id}}", values) ==
          "\"p\" = 'it''s' AND t = {{tenancy_id}}");
    CHECK(first_placeholder("a {{tenancy_id}} b") == std::optional<std::string>("tenancy_id"));
    CHECK_FALSE(first_placeholder("a {{Not A Name}} {{}} b").has_value());

    CompositeRule rule;
    rule.preset = "p";
    rule.sources.push_back(users_mirror());
    rule.sources[0].row_filter = "tenant = {{tenant}}";
    CHECK_FALSE(rule.resolved());
    CHECK_THROWS_WITH(rule.resolve({}), Contains("uses {{tenant}}, which has no value"));
    rule.resolve({{"tenant", "t1"}});
    CHECK(rule.resolved());
    CHECK(rule.sources[0].row_filter == "tenant = 't1'");
}
