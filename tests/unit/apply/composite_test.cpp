#include "authsync/apply/composite.hpp"

#include <catch2/catch.hpp>

#include "../pgoutput/decoded_fixture.hpp"

using namespace authsync;
using namespace authsync::apply;
using authsync::mapping::MirrorRow;
using authsync::pgoutput::Message;
using authsync::test::line;
using Catch::Contains;

namespace {

mapping::MirrorSource users_mirror() {
    mapping::MirrorSource s;
    s.source_table = "users";
    s.mirror_table = "m_users";
    s.key_columns = {"id"};
    s.columns = {{"id", "text"}, {"name", "text"}, {"bio", "text"}};
    s.affects = {{"neon_auth.users_sync", "changed.id", ""},
                 {"neon_auth.teams_sync", "tm.team", "JOIN t AS tm ON tm.user = changed.id"}};
    return s;
}

mapping::BoundMirror bound() {
    const auto m = test::decode_fixture("insert");
    return mapping::BoundMirror::bind(users_mirror(), line<pgoutput::Relation>(m, 2));
}

MirrorRow row(std::string id, std::optional<std::string> name, std::optional<std::string> bio,
              bool bio_present = true) {
    return MirrorRow{{std::move(id), std::move(name), std::move(bio)}, {true, true, bio_present}};
}

const PgTimestamp t1{1000};
const PgTimestamp t2{2000};

}  // namespace

TEST_CASE("mirror changes collapse per key: later values win, a delete wins", "[composite]") {
    const auto mirror = bound();
    MirrorBatch b;
    b.upsert(mirror, row("1", "a", "bio"), t1);
    b.upsert(mirror, row("1", "b", std::nullopt, false), t2);  // unchanged TOAST bio
    b.upsert(mirror, row("2", "c", std::nullopt), t1);
    b.remove(mirror, {"3"}, t1);
    b.upsert(mirror, row("3", "d", "x"), t2);  // revived
    b.upsert(mirror, row("4", "e", "y"), t1);
    b.remove(mirror, {"4"}, t2);
    CHECK(b.rows() == 4);

    auto statements = b.statements();
    REQUIRE(statements.size() == 2);
    const auto& up = statements[0];
    CHECK(up.kind == Statement::Kind::MirrorUpsert);
    REQUIRE(up.rows == 3);
    // The merged row of key 1 is full: the insert supplied bio.
    for (std::size_t i = 0; i < up.rows; ++i) {
        if (up.keys[i] != "1") continue;
        CHECK(up.row_values[i][1] == std::optional<std::string>("b"));
        CHECK(up.row_values[i][2] == std::optional<std::string>("bio"));
    }
    // NULL travels as NULL, also when the change is sent alone.
    for (std::size_t i = 0; i < up.rows; ++i) {
        if (up.keys[i] != "2") continue;
        CHECK_FALSE(up.row_values[i][2].has_value());
        auto one = up.single(i);
        const std::string c = "c";
        CHECK(one.params[2] == binary_array(ArrayType::Text, {nullptr}));
        CHECK(one.params[1] == binary_array(ArrayType::Text, {&c}));
        CHECK(one.arrays.back() == ArrayType::Timestamptz);
    }
    const auto& del = statements[1];
    CHECK(del.kind == Statement::Kind::MirrorDelete);
    CHECK(del.keys == std::vector<std::string>{"4"});
    CHECK(del.sql.find("DELETE FROM \"authsync\".\"m_users\"") != std::string::npos);
    b.clear();
    CHECK(b.empty());
    CHECK(b.statements().empty());
}

TEST_CASE("mirror changes name the source transaction that last changed them", "[composite]") {
    const auto mirror = bound();
    const Lsn a{0x100}, b{0x200};
    MirrorBatch batch;
    batch.upsert(mirror, row("1", "a", "bio"), t1, a);
    batch.upsert(mirror, row("1", "b", "bio"), t2, b);
    batch.upsert(mirror, row("2", "c", "bio"), t1, a);
    batch.remove(mirror, {"3"}, t2, b);
    auto statements = batch.statements();
    REQUIRE(statements.size() == 2);
    const auto& up = statements[0];
    REQUIRE(up.sources.size() == 2);
    for (std::size_t i = 0; i < up.rows; ++i) {
        CHECK(up.sources[i] == (up.keys[i] == "1" ? b : a));
        CHECK(up.single(i).sources == std::vector<Lsn>{up.sources[i]});
    }
    CHECK(statements[1].sources == std::vector<Lsn>{b});
    // A recompute comes from no one source transaction: its dead letters name the batch's.
    mapping::ComposedTarget users;
    users.name = "users";
    users.target_table = "users_sync";
    users.compute = "SELECT a.key AS id, '{}'::jsonb AS raw_json FROM affected AS a";
    CHECK(recompute_statement(users, "p:users", {{"u1", 5}}).sources.empty());
}

TEST_CASE("a partial mirror row updates only its present columns", "[composite]") {
    const auto mirror = bound();
    MirrorBatch b;
    b.upsert(mirror, row("1", "b", std::nullopt, false), t2);
    auto statements = b.statements();
    REQUIRE(statements.size() == 1);
    const auto& st = statements[0];
    // id, name and the change time: bio is left alone, and a row the mirror lacks is reported.
    CHECK(st.params.size() == 3);
    CHECK(st.sql.find("UPDATE \"authsync\".\"m_users\"") != std::string::npos);
    CHECK(st.sql.find("\"name\" = x.\"name\"::text") != std::string::npos);
    CHECK(st.sql.find("\"bio\" = ") == std::string::npos);
    CHECK(st.sql.find("INSERT") == std::string::npos);
    CHECK(st.sql.find("NOT EXISTS") != std::string::npos);
}

TEST_CASE("mirror statements return every affected target with its change time", "[composite]") {
    const auto mirror = bound();
    MirrorBatch b;
    b.upsert(mirror, row("1", "a", "bio"), t1);
    const auto st = b.statements().at(0);
    CHECK(st.sql.find("'neon_auth.users_sync'::text AS target, (changed.id)::text AS key") !=
          std::string::npos);
    CHECK(st.sql.find("JOIN t AS tm ON tm.user = changed.id") != std::string::npos);
    CHECK(st.sql.find("max(a.at)") != std::string::npos);
    // The old row counts too: a change that moves a row affects where it was.
    CHECK(st.sql.find("old AS (SELECT") != std::string::npos);

    const auto truncate = mirror_truncate_statement(users_mirror(), t2);
    CHECK(truncate.kind == Statement::Kind::MirrorDelete);
    CHECK(truncate.params.size() == 1);
}

TEST_CASE("recompute statements for users and for plain rows", "[composite]") {
    mapping::ComposedTarget users;
    users.name = "users";
    users.target_table = "users_sync";
    users.compute = "SELECT a.key AS id, '{}'::jsonb AS raw_json FROM affected AS a";
    AffectedKeys keys{{"u1", 5}, {"u2", 7}};
    auto st = recompute_statement(users, "p:users", keys);
    CHECK(st.kind == Statement::Kind::Recompute);
    CHECK(st.rows == 2);
    CHECK(st.mappings == std::vector<std::string>{"p:users", "p:users"});
    CHECK(st.sql.find("computed AS (SELECT a.key AS id") != std::string::npos);
    CHECK(st.sql.find("SET deleted_at") != std::string::npos);  // gone from the mirrors
    CHECK(st.sql.find("IS DISTINCT FROM EXCLUDED.raw_json") != std::string::npos);

    mapping::ComposedTarget members;
    members.name = "members";
    members.target_table = "members_sync";
    members.kind = mapping::TargetKind::Rows;
    members.group_column = "user_id";
    members.key_columns = {"team_id", "user_id"};
    members.columns = {"team_id", "user_id"};
    members.compute = "SELECT 't' AS team_id, a.key AS user_id FROM affected AS a";
    st = recompute_statement(members, "p:members", keys);
    CHECK(st.sql.find("DELETE FROM \"neon_auth\".\"members_sync\" AS t USING affected AS a WHERE "
                      "t.\"user_id\"::text = a.key") != std::string::npos);
    CHECK(st.sql.find("ON CONFLICT (\"team_id\", \"user_id\") DO NOTHING") != std::string::npos);

    members.columns.push_back("role");
    st = recompute_statement(members, "p:members", keys);
    CHECK(st.sql.find("DO UPDATE SET \"role\" = EXCLUDED.\"role\" WHERE ROW(t.\"role\") IS "
                      "DISTINCT FROM ROW(EXCLUDED.\"role\")") != std::string::npos);

    const auto all = recompute_all_sql(users);
    CHECK(all.find("SELECT \"id\"::text FROM \"neon_auth\".\"users_sync\" WHERE deleted_at IS "
                   "NULL") != std::string::npos);
}

TEST_CASE("mirror DDL has the key, the change time and the indexes", "[composite]") {
    auto s = users_mirror();
    s.indexes = {{"name", "bio"}};
    const auto ddl = mirror_ddl(s);
    CHECK(ddl.find("CREATE TABLE IF NOT EXISTS \"authsync\".\"m_users\"") != std::string::npos);
    CHECK(ddl.find("PRIMARY KEY (\"id\")") != std::string::npos);
    CHECK(ddl.find("authsync_changed_at timestamptz") != std::string::npos);
    CHECK(ddl.find("\"m_users_name_bio_idx\" ON \"authsync\".\"m_users\" (\"name\", \"bio\")") !=
          std::string::npos);
}
