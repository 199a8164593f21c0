#include <catch2/catch.hpp>

#include "authsync/core/error.hpp"
#include "authsync/pgoutput/relation_cache.hpp"

using namespace authsync;
using namespace authsync::pgoutput;

namespace {

Relation users(std::vector<std::string> columns) {
    Relation r;
    r.relation_id = 16384;
    r.namespace_name = "public";
    r.relation_name = "users";
    for (auto& c : columns) r.columns.push_back({c == "id", c, 25, -1});
    return r;
}

}  // namespace

TEST_CASE("a re-sent Relation message replaces the cached schema", "[pgoutput][relation_cache]") {
    RelationCache cache;
    cache.apply(users({"id", "name"}));
    CHECK(cache.get(16384, "Insert").columns.size() == 2);
    cache.apply(users({"id", "name", "email"}));
    const auto& rel = cache.get(16384, "Insert");
    REQUIRE(rel.columns.size() == 3);
    CHECK(rel.columns[2].name == "email");
    // Replaced, not merged: a dropped column disappears.
    cache.apply(users({"id", "email"}));
    REQUIRE(cache.get(16384, "Insert").columns.size() == 2);
    CHECK(cache.get(16384, "Insert").columns[1].name == "email");
    CHECK(cache.size() == 1);
}

TEST_CASE("DML for an unknown relation is a protocol error", "[pgoutput][relation_cache]") {
    RelationCache cache;
    CHECK_THROWS_AS(cache.get(42, "Insert"), ProtocolError);
    CHECK_THROWS_WITH(cache.get(42, "Update"), Catch::Contains("Update message") &&
                                                   Catch::Contains("unknown relation id 42"));
    CHECK(cache.find(42) == nullptr);
}

TEST_CASE("a tuple whose width differs from its relation is a protocol error",
          "[pgoutput][relation_cache]") {
    auto rel = users({"id", "name"});
    TupleData two(2), three(3);
    CHECK_NOTHROW(RelationCache::check_tuple(rel, two, "Insert"));
    CHECK_THROWS_WITH(RelationCache::check_tuple(rel, three, "Insert"),
                      Catch::Contains("public.users") && Catch::Contains("3 columns"));
}

TEST_CASE("clearing the cache forgets relations and types", "[pgoutput][relation_cache]") {
    RelationCache cache;
    cache.apply(users({"id"}));
    Type t;
    t.type_id = 99;
    t.namespace_name = "public";
    t.type_name = "mood";
    cache.apply(t);
    REQUIRE(cache.find_type(99) != nullptr);
    CHECK(cache.find_type(99)->type_name == "mood");
    cache.clear();
    CHECK(cache.find(16384) == nullptr);
    CHECK(cache.find_type(99) == nullptr);
}

TEST_CASE("an empty namespace means pg_catalog", "[pgoutput][relation_cache]") {
    auto rel = users({"id"});
    CHECK(qualified_name(rel) == "public.users");
    rel.namespace_name.clear();
    CHECK(qualified_name(rel) == "pg_catalog.users");
}
