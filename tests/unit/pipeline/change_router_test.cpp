#include "authsync/pipeline/change_router.hpp"

#include <catch2/catch.hpp>

#include <memory>

#include "../pgoutput/decoded_fixture.hpp"
#include "authsync/core/error.hpp"
#include "authsync/pipeline/lanes.hpp"

using namespace authsync;
using namespace authsync::pipeline;
using authsync::test::decode_fixture;
using authsync::test::line;

namespace {

mapping::MappingRule users_rule() {
    mapping::MappingRule r;
    r.source_table = "users";
    r.key_columns = {"id"};
    r.fields = {{"display_name", "name"}, {"primary_email", "email"}};
    return r;
}

// A composite whose one source is public.users, mirrored by its id, affecting that user only.
mapping::CompositeRule users_composite(std::string affects_key) {
    mapping::CompositeRule c;
    c.preset = "test";
    mapping::MirrorSource s;
    s.source_table = "users";
    s.mirror_table = "test_users";
    s.key_columns = {"id"};
    s.columns = {{"id", "text"}, {"name", "text"}};
    s.affects = {{"users", std::move(affects_key), ""}};
    c.sources = {s};
    return c;
}

// A captured fixture fed through a cache and a router: the operations of every change (they
// point into the router, kept here with its rules).
struct Routed {
    std::vector<mapping::MappingRule> mappings;
    std::vector<mapping::CompositeRule> composites;
    std::unique_ptr<ChangeRouter> router_holder;
    std::vector<Operation> ops;
    std::vector<std::string> kinds;  // "upsert <key>", "remove <key>", "truncate"
};

void feed(const std::string& name, ChangeRouter& router, Routed& out);

std::unique_ptr<Routed> route_fixture(const std::string& name,
                                      std::vector<mapping::MappingRule> mappings,
                                      std::vector<mapping::CompositeRule> composites,
                                      std::size_t lanes) {
    auto out = std::make_unique<Routed>();
    out->mappings = std::move(mappings);
    out->composites = std::move(composites);
    out->router_holder = std::make_unique<ChangeRouter>(out->mappings, out->composites, lanes);
    feed(name, *out->router_holder, *out);
    return out;
}

void feed(const std::string& name, ChangeRouter& router, Routed& out) {
    pgoutput::RelationCache cache;
    for (const auto& m : decode_fixture(name)) {
        if (auto* r = std::get_if<pgoutput::Relation>(&m)) {
            cache.apply(*r);
            router.bind(*r);
            continue;
        }
        if (std::holds_alternative<pgoutput::Begin>(m) ||
            std::holds_alternative<pgoutput::Commit>(m)) {
            continue;
        }
        std::vector<Operation> ops;
        router.route(m, cache, ops);
        for (auto& op : ops) {
            if (auto* u = std::get_if<Upsert>(&op.change)) {
                out.kinds.push_back(
                    "upsert " + (op.destination->mapping ? u->image.key : *u->row.values.front()));
            } else if (auto* rm = std::get_if<Remove>(&op.change)) {
                out.kinds.push_back("remove " +
                                    (op.destination->mapping ? rm->key : rm->mirror_key.front()));
            } else {
                out.kinds.push_back("truncate");
            }
            out.ops.push_back(std::move(op));
        }
    }
}

}  // namespace

TEST_CASE("inserts of a mapped table become upserts of their keys, in lane 0 with one lane",
          "[pipeline]") {
    auto r = route_fixture("insert", std::vector<mapping::MappingRule>{users_rule()}, {}, 1);
    const auto& routed = *r;
    CHECK(routed.kinds == std::vector<std::string>{"upsert 1", "upsert 2"});
    for (const auto& op : routed.ops) {
        CHECK(op.writer == 0);
        CHECK(op.destination->source_name == "public.users");
        CHECK(op.destination->mapping != nullptr);
    }
}

TEST_CASE("every change goes to the lane of its target key", "[pipeline]") {
    auto r = route_fixture("insert", std::vector<mapping::MappingRule>{users_rule()}, {}, 4);
    const auto& routed = *r;
    REQUIRE(routed.ops.size() == 2);
    CHECK(routed.ops[0].writer == lane_of("1", 4));
    CHECK(routed.ops[1].writer == lane_of("2", 4));
}

TEST_CASE("a key change removes the old key in its lane and upserts the new one in its own",
          "[pipeline]") {
    auto r = route_fixture("key_change", {users_rule()}, {}, 8);
    const auto& routed = *r;
    CHECK(routed.kinds == std::vector<std::string>{"remove 1", "upsert 100"});
    REQUIRE(routed.ops.size() == 2);
    CHECK(routed.ops[0].writer == lane_of("1", 8));
    CHECK(routed.ops[1].writer == lane_of("100", 8));
}

TEST_CASE(
    "a mirror whose changes affect only its own key's user is routed by that key, with "
    "the same code path as a mapping",
    "[pipeline]") {
    auto r = route_fixture("key_change", {}, {users_composite("changed.id")}, 4);
    const auto& routed = *r;
    CHECK(routed.kinds == std::vector<std::string>{"remove 1", "upsert 100"});
    REQUIRE(routed.ops.size() == 2);
    CHECK(routed.ops[0].destination->mirror != nullptr);
    CHECK(routed.ops[0].destination->routed);
    CHECK(routed.ops[0].writer == lane_of("1", 4));
    CHECK(routed.ops[1].writer == lane_of("100", 4));
}

TEST_CASE("a preset whose changes affect rows found only in the target goes to lane 0",
          "[pipeline]") {
    CHECK(ChangeRouter::routable(users_composite("changed.id")));
    CHECK(ChangeRouter::routable(users_composite(" changed.\"id\"::text ")));
    CHECK_FALSE(ChangeRouter::routable(users_composite("changed.name")));
    auto joined = users_composite("t.user_id::text");
    joined.sources.front().affects.front().join = "JOIN authsync.t t ON t.id = changed.id";
    CHECK_FALSE(ChangeRouter::routable(joined));
    auto r = route_fixture("insert", {}, {users_composite("changed.name")}, 4);
    const auto& routed = *r;
    REQUIRE(routed.ops.size() == 2);
    for (const auto& op : routed.ops) CHECK(op.writer == 0);
}

TEST_CASE("a truncate of a routed table goes to every lane, each for the keys it owns",
          "[pipeline]") {
    mapping::MappingRule orgs;
    orgs.source_table = "orgs";
    orgs.key_columns = {"id"};
    orgs.fields = {{"display_name", "name"}};
    auto r = route_fixture("truncate", {orgs}, {}, 3);
    const auto& routed = *r;
    // One TRUNCATE names orgs (members and audit_log map to nothing): one per lane.
    REQUIRE(routed.kinds.size() == 3);
    for (std::size_t i = 0; i < routed.ops.size(); ++i) {
        CHECK(routed.ops[i].writer == i % 3);
        CHECK(std::get<Truncate>(routed.ops[i].change).lanes == 3);
        // Each names its lane's rows (a sink taking lanes over applies them all on one writer).
        CHECK(std::get<Truncate>(routed.ops[i].change).lane == routed.ops[i].writer);
    }
}

TEST_CASE("a re-sent Relation replaces the binding the router uses", "[pipeline]") {
    std::vector<mapping::MappingRule> mappings{users_rule()};
    std::vector<mapping::CompositeRule> composites;
    ChangeRouter router(mappings, composites, 1);
    const auto messages = decode_fixture("insert");
    pgoutput::RelationCache cache;
    auto relation = line<pgoutput::Relation>(messages, 2);
    cache.apply(relation);
    router.bind(relation);
    // The same table re-described without the email column: the mapping cannot bind.
    auto narrower = relation;
    narrower.columns.erase(narrower.columns.begin() + 2);
    cache.apply(narrower);
    CHECK_THROWS_AS(router.bind(narrower), MappingError);
    // An unmapped table's changes give nothing; a tuple of the wrong width is a protocol error.
    std::vector<Operation> ops;
    CHECK_THROWS_AS(router.route(messages.at(2), cache, ops), ProtocolError);
    CHECK(ops.empty());
}

TEST_CASE("a message that is not a change is refused", "[pipeline]") {
    std::vector<mapping::MappingRule> mappings{users_rule()};
    std::vector<mapping::CompositeRule> composites;
    ChangeRouter router(mappings, composites, 1);
    pgoutput::RelationCache cache;
    std::vector<Operation> ops;
    CHECK_THROWS_AS(router.route(pgoutput::Message{pgoutput::Begin{}}, cache, ops), ProtocolError);
}

// Fan-out: a scope keeps a target's rows (captured changes of public.users).
namespace {

mapping::MappingRule scoped(std::vector<std::pair<std::string, std::string>> scope) {
    auto r = users_rule();
    r.scope = std::move(scope);
    return r;
}

}  // namespace

TEST_CASE("a scoped mapping passes on only the rows in its scope", "[pipeline][scope]") {
    // insert: alice (id 1) and bob (id 2).
    CHECK(route_fixture("insert", {scoped({{"name", "alice"}})}, {}, 1)->kinds ==
          std::vector<std::string>{"upsert 1"});
    CHECK(route_fixture("insert", {scoped({{"id", "2"}})}, {}, 1)->kinds ==
          std::vector<std::string>{"upsert 2"});
    // Every term must hold; a NULL never matches.
    CHECK(route_fixture("insert", {scoped({{"name", "bob"}, {"id", "1"}})}, {}, 1)->kinds.empty());
    CHECK(route_fixture("insert", {scoped({{"email", ""}})}, {}, 1)->kinds.empty());
}

TEST_CASE("an update that leaves the scope removes the key, one into it upserts",
          "[pipeline][scope]") {
    // update: alice -> alice2, same key, no old tuple (name is outside the identity).
    CHECK(route_fixture("update", {scoped({{"name", "alice2"}})}, {}, 1)->kinds ==
          std::vector<std::string>{"upsert 1"});
    // Out of scope now, and nothing tells whether it was in before: its key goes.
    CHECK(route_fixture("update", {scoped({{"name", "alice"}})}, {}, 1)->kinds ==
          std::vector<std::string>{"remove 1"});
    // A scope on the key: the key did not change, so neither did the scope.
    CHECK(route_fixture("update", {scoped({{"id", "7"}})}, {}, 1)->kinds.empty());
}

TEST_CASE("a key change into the scope removes the old key only where it may have been",
          "[pipeline][scope]") {
    // key_change: id 1 -> 100 (alice). The old key was another scope's: the row that has key
    // 1 in this target, if any, is a different one, and stays.
    CHECK(route_fixture("key_change", {scoped({{"id", "100"}})}, {}, 1)->kinds ==
          std::vector<std::string>{"upsert 100"});
    // The old tuple carries the key only: whether it was in a name scope is unknown, so the
    // old key goes.
    CHECK(route_fixture("key_change", {scoped({{"name", "alice"}})}, {}, 1)->kinds ==
          (std::vector<std::string>{"remove 1", "upsert 100"}));
}

TEST_CASE("a delete goes where its old key says, or everywhere when it cannot tell",
          "[pipeline][scope]") {
    // delete of id 2: the old tuple carries the key only.
    CHECK(route_fixture("delete", {scoped({{"id", "2"}})}, {}, 1)->kinds ==
          std::vector<std::string>{"remove 2"});
    CHECK(route_fixture("delete", {scoped({{"id", "1"}})}, {}, 1)->kinds.empty());
    CHECK(route_fixture("delete", {scoped({{"name", "bob"}})}, {}, 1)->kinds ==
          std::vector<std::string>{"remove 2"});
    CHECK(route_fixture("delete", {scoped({{"name", "someone else"}})}, {}, 1)->kinds ==
          std::vector<std::string>{"remove 2"});
}

TEST_CASE("a scope column the stream does not carry is an error at bind", "[pipeline][scope]") {
    CHECK_THROWS_AS(route_fixture("insert", {scoped({{"tenant", "a"}})}, {}, 1), MappingError);
}

TEST_CASE("a preset source's scope uses its resolved lookup value", "[pipeline][scope]") {
    auto c = users_composite("changed.id");
    c.sources.front().scope = {{"name", "who"}};
    c.lookups = {{"who", "SELECT 'bob'"}};
    c.resolve({{"who", "bob"}});
    CHECK(route_fixture("insert", {}, {c}, 1)->kinds == std::vector<std::string>{"upsert 2"});
    // Not resolved yet: binding it would route every row, so it is refused.
    auto unresolved = users_composite("changed.id");
    unresolved.sources.front().scope = {{"name", "who"}};
    CHECK_THROWS_AS(route_fixture("insert", {}, {unresolved}, 1), std::logic_error);
}
