#include <catch2/catch.hpp>

#include "authsync/apply/batch.hpp"
#include "authsync/core/sql.hpp"

using namespace authsync;
using namespace authsync::apply;
using mapping::RowImage;

namespace {

mapping::MappingRule rule(mapping::OnDelete on_delete = mapping::OnDelete::Soft) {
    mapping::MappingRule r;
    r.source_table = "users";
    r.key_columns = {"id"};
    r.on_delete = on_delete;
    return r;
}

RowImage image(std::string key, std::vector<std::pair<std::string, std::string>> fields,
               bool partial = false) {
    RowImage i;
    i.key = std::move(key);
    for (const auto& [k, v] : fields) i.add(k, v);
    i.partial = partial;
    return i;
}

// An array parameter as authsync sends it (binary_array is checked against the server below).
std::string texts(std::vector<std::string> elements) {
    std::vector<const std::string*> ptrs;
    for (const auto& e : elements) ptrs.push_back(&e);
    return binary_array(ArrayType::Text, ptrs);
}
std::string times(std::vector<std::string> elements) {
    std::vector<const std::string*> ptrs;
    for (const auto& e : elements) ptrs.push_back(&e);
    return binary_array(ArrayType::Timestamptz, ptrs);
}

std::string unhex(std::string_view hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
    }
    return out;
}

const Statement* find(const std::vector<Statement>& sts, Statement::Kind kind) {
    for (const auto& s : sts) {
        if (s.kind == kind) return &s;
    }
    return nullptr;
}

}  // namespace

TEST_CASE("changes to one key collapse to its final state", "[apply]") {
    auto r = rule();
    Batch b;
    b.upsert(r, image("1", {{"id", "\"1\""}, {"v", "1"}}), PgTimestamp{10});
    b.upsert(r, image("1", {{"id", "\"1\""}, {"v", "2"}}), PgTimestamp{20});
    b.upsert(r, image("2", {{"id", "\"2\""}, {"v", "1"}}), PgTimestamp{20});
    b.remove(r, "2", PgTimestamp{30});
    CHECK(b.rows() == 2);
    auto sts = b.statements();
    REQUIRE(sts.size() == 2);
    const auto* up = find(sts, Statement::Kind::UpsertFull);
    REQUIRE(up);
    CHECK(up->rows == 1);
    CHECK(up->arrays == std::vector<ArrayType>{ArrayType::Text, ArrayType::Timestamptz});
    CHECK(up->params[0] == texts({R"({"id":"1","v":2})"}));
    CHECK(up->params[1] == times({"2000-01-01T00:00:00.000020Z"}));
    const auto* del = find(sts, Statement::Kind::SoftDelete);
    REQUIRE(del);
    CHECK(del->params[0] == texts({"2"}));
    CHECK_THAT(del->sql, Catch::Contains("\"neon_auth\".\"users_sync\""));
}

TEST_CASE("a partial image merges over an earlier full one and becomes full", "[apply]") {
    auto r = rule();
    Batch b;
    b.upsert(r, image("1", {{"id", "\"1\""}, {"bio", "\"long\""}, {"name", "\"a\""}}),
             PgTimestamp{1});
    b.upsert(r, image("1", {{"id", "\"1\""}, {"name", "\"b\""}}, true), PgTimestamp{2});
    auto sts = b.statements();
    REQUIRE(sts.size() == 1);
    CHECK(sts[0].kind == Statement::Kind::UpsertFull);
    CHECK(sts[0].params[0] == texts({R"({"id":"1","bio":"long","name":"b"})"}));
}

TEST_CASE("a partial image alone is merged into the target's raw_json", "[apply]") {
    auto r = rule();
    Batch b;
    b.upsert(r, image("1", {{"id", "\"1\""}, {"name", "\"b\""}}, true), PgTimestamp{2});
    auto sts = b.statements();
    REQUIRE(sts.size() == 1);
    CHECK(sts[0].kind == Statement::Kind::UpsertPartial);
    CHECK_THAT(sts[0].sql, Catch::Contains("t.raw_json || EXCLUDED.raw_json"));
}

TEST_CASE("an upsert after a delete revives the user; hard deletes remove", "[apply]") {
    auto hard = rule(mapping::OnDelete::Hard);
    Batch b;
    b.remove(hard, "1", PgTimestamp{1});
    b.upsert(hard, image("1", {{"id", "\"1\""}}), PgTimestamp{2});
    b.upsert(hard, image("2", {{"id", "\"2\""}}), PgTimestamp{2});
    b.remove(hard, "2", PgTimestamp{3});
    auto sts = b.statements();
    REQUIRE(sts.size() == 2);
    CHECK(find(sts, Statement::Kind::UpsertFull)->params[0] == texts({R"({"id":"1"})"}));
    CHECK(find(sts, Statement::Kind::HardDelete)->params[0] == texts({"2"}));
    b.clear();
    CHECK(b.empty());
    CHECK(b.bytes() == 0);
    CHECK(b.statements().empty());
}

TEST_CASE("array literals quote every element and escape quotes and backslashes", "[apply]") {
    std::string a = "plain", q = "say \"hi\"", bs = "back\\slash", comma = "a,b}{";
    CHECK(text_array_literal({&a, nullptr, &q, &bs, &comma}) ==
          R"({"plain",NULL,"say \"hi\"","back\\slash","a,b}{"})");
    CHECK(text_array_literal(std::vector<std::string>{}) == "{}");
    CHECK(text_array_literal(std::vector<std::string>{a, q}) == R"({"plain","say \"hi\""})");
}

TEST_CASE("identifiers in statements are always quoted", "[apply]") {
    auto r = rule();
    r.target_schema = "My \"Schema\"";
    r.target_table = "users sync";
    auto st = truncate_statement(r, PgTimestamp{0});
    CHECK_THAT(st.sql, Catch::Contains(R"("My ""Schema"""."users sync")"));
}

TEST_CASE("the checkpoint statement binds slot, LSN and commit time", "[apply]") {
    auto st = checkpoint_statement("my_slot", Lsn(0x16B3748), PgTimestamp{0});
    CHECK_THAT(st.sql, Catch::StartsWith("INSERT INTO authsync.checkpoint"));
    CHECK_THAT(st.sql, Catch::Contains("ON CONFLICT (slot) DO UPDATE"));
    REQUIRE(st.params.size() == 3);
    CHECK(st.params[0] == "my_slot");
    CHECK(st.params[1] == "0/16B3748");
    CHECK_THAT(*st.params[2], Catch::StartsWith("2000-01-01T00:00:00"));
}

TEST_CASE("every checkpoint write marks the row as covering what is acknowledged", "[apply]") {
    auto st = checkpoint_statement("my_slot", Lsn(0x16B3748), PgTimestamp{0});
    CHECK_THAT(st.sql, Catch::Contains("covers_acknowledged = true"));
}

TEST_CASE("an idle acknowledgement keeps the stored commit time", "[apply]") {
    auto st = checkpoint_statement("my_slot", Lsn(0x16B3748), std::nullopt);
    CHECK_FALSE(st.params.at(2).has_value());
    CHECK_THAT(st.sql,
               Catch::Contains("coalesce(EXCLUDED.commit_time, authsync.checkpoint.commit_time)"));
}

// A sink that took over lanes stopped apart (engine/sink_role.cpp): no lane's row moves back.
TEST_CASE("the every-lane checkpoint raises each lane's row and lowers none", "[apply]") {
    auto st = every_lane_checkpoint_statement("my_slot", Lsn(0x16B3748), std::nullopt);
    CHECK_THAT(st.sql, Catch::StartsWith("WITH lanes AS (UPDATE authsync.checkpoint SET "
                                         "end_lsn = greatest(end_lsn, $2::pg_lsn)"));
    CHECK_THAT(st.sql, Catch::Contains("starts_with(slot, $1 || '/lane')"));
    CHECK_THAT(st.sql,
               Catch::Contains("DO UPDATE SET end_lsn = greatest(authsync.checkpoint.end_lsn, "
                               "EXCLUDED.end_lsn)"));
    CHECK_THAT(st.sql, Catch::Contains("covers_acknowledged = true"));
    REQUIRE(st.params.size() == 3);
    CHECK(st.params[0] == "my_slot");
    CHECK(st.params[1] == "0/16B3748");
    CHECK_FALSE(st.params[2].has_value());
    // The single writer's form sets the LSN it is given.
    CHECK_THAT(checkpoint_statement("my_slot", Lsn(1), std::nullopt).sql,
               Catch::Contains("DO UPDATE SET end_lsn = EXCLUDED.end_lsn,"));
}

// Bytes from PostgreSQL 15: encode(array_send(ARRAY[...]::T[]), 'hex').
TEST_CASE("array parameters are in PostgreSQL's binary array format", "[apply]") {
    const std::string a = "a", q = "b\"c";
    CHECK(binary_array(ArrayType::Text, {&a, nullptr, &q}) ==
          unhex("00000001000000010000001900000003000000010000000161ffffffff00000003622263"));
    const std::string t = "2024-05-01T12:00:00.123456Z";
    CHECK(binary_array(ArrayType::Timestamptz, {&t}) ==
          unhex("0000000100000000000004a00000000100000001000000080002ba61fea33240"));
    const std::string n42 = "42", m1 = "-1";
    CHECK(binary_array(ArrayType::Int8, {&n42, &m1}) ==
          unhex("000000010000000000000014000000020000000100000008000000000000002a00000008ffffffffff"
                "ffffff"));
    CHECK(binary_array(ArrayType::Text, {}) == unhex("000000000000000000000019"));
    const std::string bad = "yesterday";
    CHECK_THROWS_AS(binary_array(ArrayType::Timestamptz, {&bad}), std::invalid_argument);
    CHECK_THROWS_AS(binary_array(ArrayType::Int8, {&bad}), std::invalid_argument);
}

TEST_CASE("a change sent alone keeps its array types", "[apply]") {
    auto r = rule();
    Batch b;
    b.upsert(r, image("1", {{"id", "\"1\""}}), PgTimestamp{20});
    b.upsert(r, image("2", {{"id", "\"2\""}}), PgTimestamp{20});
    auto sts = b.statements();
    REQUIRE(sts.size() == 1);
    const std::size_t i = sts[0].keys[0] == "2" ? 0 : 1;
    auto one = sts[0].single(i);
    CHECK(one.arrays == sts[0].arrays);
    CHECK(one.params[0] == texts({R"({"id":"2"})"}));
    CHECK(one.params[1] == times({"2000-01-01T00:00:00.000020Z"}));
}

TEST_CASE("each change names the source transaction that last changed it", "[apply]") {
    // A dead letter names its change's own source transaction, not the batch's last one.
    auto r = rule();
    const Lsn a{0x100}, b{0x200}, c{0x300};
    Batch batch;
    batch.upsert(r, image("1", {{"id", "\"1\""}}), PgTimestamp{10}, a);
    batch.upsert(r, image("2", {{"id", "\"2\""}}), PgTimestamp{10}, a);
    batch.upsert(r, image("1", {{"id", "\"1\""}, {"v", "2"}}), PgTimestamp{20}, b);
    batch.upsert(r, image("3", {{"id", "\"3\""}}), PgTimestamp{20}, b);
    batch.remove(r, "3", PgTimestamp{30}, c);
    auto sts = batch.statements();
    const auto* up = find(sts, Statement::Kind::UpsertFull);
    const auto* del = find(sts, Statement::Kind::SoftDelete);
    REQUIRE(up);
    REQUIRE(del);
    REQUIRE(up->sources.size() == 2);
    for (std::size_t i = 0; i < up->rows; ++i) {
        CHECK(up->sources[i] == (up->keys[i] == "1" ? b : a));
        CHECK(up->single(i).sources == std::vector<Lsn>{up->sources[i]});
    }
    CHECK(del->keys == std::vector<std::string>{"3"});
    CHECK(del->sources == std::vector<Lsn>{c});
}

TEST_CASE("a statement's array parameters are rebuilt from its per-change values", "[apply]") {
    auto r = rule();
    Batch b;
    b.upsert(r, image("1", {{"id", "\"1\""}}), PgTimestamp{20});
    b.upsert(r, image("2", {{"id", "\"2\""}}), PgTimestamp{30});
    b.remove(r, "3", PgTimestamp{40});
    for (const auto& st : b.statements()) CHECK(st.array_params() == st.params);
}
