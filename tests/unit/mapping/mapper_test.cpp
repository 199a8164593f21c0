#include "authsync/mapping/mapper.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../pgoutput/decoded_fixture.hpp"
#include "authsync/core/error.hpp"
#include "authsync/core/utf8.hpp"

using namespace authsync;
using namespace authsync::mapping;
using authsync::pgoutput::ColumnKind;
using authsync::pgoutput::Message;
using authsync::pgoutput::TupleData;
using authsync::test::line;
using Catch::Contains;

namespace {

MappingRule users_rule() {
    MappingRule r;
    r.source_table = "users";
    r.key_columns = {"id"};
    r.fields = {
        {"display_name", "name"},
        {"primary_email", "email"},
        {"signed_up_at_millis", "created_at", Conversion::EpochMillis},
        {"client_metadata", "metadata"},
        {"primary_email_verified", "active"},
        {"bio", "bio"},
    };
    return r;
}

MappingRule rule_for(std::string table, std::vector<FieldRule> fields,
                     std::vector<std::string> key_columns = {"id"}) {
    MappingRule r;
    r.source_table = std::move(table);
    r.key_columns = std::move(key_columns);
    r.fields = std::move(fields);
    return r;
}

nlohmann::json parse(const std::string& text) {
    return nlohmann::json::parse(text);
}

bool has_field(const RowImage& image, const std::string& json_key) {
    return image.value_of(json_key).has_value();
}

RowImage image_of(std::vector<std::pair<std::string, std::string>> fields) {
    RowImage image;
    for (const auto& [k, v] : fields) image.add(k, v);
    return image;
}

std::string auto_json(std::string_view text, pgoutput::TypeId type_id) {
    return column_to_json(text, type_id, Conversion::Auto);
}

std::string millis_json(std::string_view text, pgoutput::TypeId type_id) {
    return column_to_json(text, type_id, Conversion::EpochMillis);
}

// The message of the MappingError that `f` throws ("" when it throws nothing).
template <typename F>
std::string mapping_error(F&& f) {
    try {
        f();
    } catch (const MappingError& e) {
        return e.what();
    }
    return "";
}

constexpr pgoutput::TypeId kText = 25;
constexpr pgoutput::TypeId kBool = 16;
constexpr pgoutput::TypeId kInt2 = 21;
constexpr pgoutput::TypeId kInt4 = 23;
constexpr pgoutput::TypeId kInt8 = 20;
constexpr pgoutput::TypeId kOid = 26;
constexpr pgoutput::TypeId kNumeric = 1700;
constexpr pgoutput::TypeId kFloat4 = 700;
constexpr pgoutput::TypeId kFloat8 = 701;
constexpr pgoutput::TypeId kJson = 114;
constexpr pgoutput::TypeId kJsonb = 3802;
constexpr pgoutput::TypeId kDate = 1082;
constexpr pgoutput::TypeId kTimestamp = 1114;
constexpr pgoutput::TypeId kTimestamptz = 1184;
constexpr pgoutput::TypeId kUuid = 2950;

}  // namespace

// ---- tuples captured from PostgreSQL 15 -------------------------------------------------------

TEST_CASE("an insert maps to a full image with the key first and fields in rule order",
          "[mapping]") {
    const auto m = test::decode_fixture("insert");
    const auto mapping = BoundMapping::bind(users_rule(), line<pgoutput::Relation>(m, 2));
    const auto image = mapping.map_new(line<pgoutput::Insert>(m, 3).new_tuple, nullptr);

    CHECK(image.key == "1");
    CHECK_FALSE(image.partial);
    const std::string expected =
        R"({"id":"1","display_name":"alice","primary_email":"alice@example.com",)"
        R"("signed_up_at_millis":1704164645000,"client_metadata":{"role": "admin"},)"
        R"("primary_email_verified":true,"bio":null})";
    CHECK(image.to_json() == expected);
    CHECK(parse(image.to_json()) == nlohmann::json{{"id", "1"},
                                                   {"display_name", "alice"},
                                                   {"primary_email", "alice@example.com"},
                                                   {"signed_up_at_millis", 1704164645000},
                                                   {"client_metadata", {{"role", "admin"}}},
                                                   {"primary_email_verified", true},
                                                   {"bio", nullptr}});
}

TEST_CASE("multi-column keys never collide: a ':' or backslash inside a part is escaped",
          "[mapping]") {
    auto key = [](std::vector<std::string> parts) {
        std::string k;
        for (std::size_t i = 0; i < parts.size(); ++i) append_key_part(k, i, parts[i]);
        return k;
    };
    // Joined with ':' as before: ids of parts without ':' or '\\' are unchanged.
    CHECK(key({"t1", "42"}) == "t1:42");
    CHECK(key({"a:b", "c"}) != key({"a", "b:c"}));
    CHECK(key({"a:b", "c"}) == "a\\:b:c");
    CHECK(key({"a", "b:c"}) == "a:b\\:c");
    CHECK(key({"a\\", ":b"}) != key({"a\\:", "b"}));
    CHECK(key({"", ":"}) != key({":", ""}));
}

TEST_CASE("a two-column key is built alike from the new tuple and from the old one", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    auto rule = users_rule();
    rule.key_columns = {"name", "email"};
    const auto mapping = BoundMapping::bind(rule, line<pgoutput::Relation>(m, 2));
    const auto& tuple = line<pgoutput::Insert>(m, 3).new_tuple;
    const auto image = mapping.map_new(tuple, nullptr);
    CHECK(image.key == "alice:alice@example.com");
    CHECK(mapping.key_of_old(tuple) == image.key);
}

TEST_CASE("a NULL column maps to JSON null, not to a missing key", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    const auto mapping = BoundMapping::bind(users_rule(), line<pgoutput::Relation>(m, 2));
    const auto image = mapping.map_new(line<pgoutput::Insert>(m, 4).new_tuple, nullptr);

    CHECK(image.key == "2");
    CHECK_FALSE(image.partial);
    const auto json = parse(image.to_json());
    REQUIRE(json.contains("primary_email"));
    CHECK(json["primary_email"].is_null());
    CHECK(json["bio"] == "hi");
    CHECK(json["primary_email_verified"] == false);
    CHECK(json["signed_up_at_millis"] == 1704164646000);
}

TEST_CASE("an unchanged TOAST column is left out and makes the image partial", "[mapping]") {
    const auto m = test::decode_fixture("toast_unchanged");
    const auto& update = line<pgoutput::Update>(m, 3);
    REQUIRE(update.new_tuple.at(6).kind == ColumnKind::UnchangedToast);
    const auto mapping = BoundMapping::bind(users_rule(), line<pgoutput::Relation>(m, 2));
    const auto image = mapping.map_new(update.new_tuple, nullptr);

    CHECK(image.partial);
    CHECK(image.key == "1");
    CHECK_FALSE(has_field(image, "bio"));
    const auto json = parse(image.to_json());
    CHECK_FALSE(json.contains("bio"));
    CHECK(json["display_name"] == "alice2");
    CHECK(json["id"] == "1");
    CHECK(image.field_count() == 6);
}

TEST_CASE("a key change maps the new key from the new tuple and the old key from the K tuple",
          "[mapping]") {
    const auto m = test::decode_fixture("key_change");
    const auto& update = line<pgoutput::Update>(m, 3);
    REQUIRE(update.old_kind == pgoutput::OldTupleKind::Key);
    const auto mapping = BoundMapping::bind(users_rule(), line<pgoutput::Relation>(m, 2));

    const auto image = mapping.map_new(update.new_tuple, &update.old_tuple);
    CHECK(image.key == "100");
    CHECK(parse(image.to_json())["id"] == "100");
    CHECK_FALSE(image.partial);
    CHECK(mapping.key_of_old(update.old_tuple) == "1");
}

TEST_CASE("a delete's key comes from its K tuple", "[mapping]") {
    const auto m = test::decode_fixture("delete");
    const auto& del = line<pgoutput::Delete>(m, 3);
    const auto mapping = BoundMapping::bind(users_rule(), line<pgoutput::Relation>(m, 2));
    CHECK(mapping.key_of_old(del.old_tuple) == "2");
}

TEST_CASE("an old tuple under REPLICA IDENTITY FULL gives the key too", "[mapping]") {
    const auto m = test::decode_fixture("replica_full");
    const auto mapping = BoundMapping::bind(users_rule(), line<pgoutput::Relation>(m, 2));
    const auto& update = line<pgoutput::Update>(m, 3);
    REQUIRE(update.old_kind == pgoutput::OldTupleKind::Old);
    CHECK(mapping.key_of_old(update.old_tuple) == "1");
    const auto image = mapping.map_new(update.new_tuple, &update.old_tuple);
    CHECK(parse(image.to_json())["primary_email"] == "alice@new.example.com");
    CHECK(mapping.key_of_old(line<pgoutput::Delete>(m, 6).old_tuple) == "2");
}

TEST_CASE("a key column missing from a delete's K tuple names the replica identity", "[mapping]") {
    const auto m = test::decode_fixture("delete");
    auto rule = users_rule();
    rule.key_columns = {"email"};
    const auto mapping = BoundMapping::bind(rule, line<pgoutput::Relation>(m, 2));
    const auto& del = line<pgoutput::Delete>(m, 3);
    CHECK_THROWS_AS(mapping.key_of_old(del.old_tuple), MappingError);
    CHECK_THROWS_WITH(mapping.key_of_old(del.old_tuple),
                      Contains("mapping public.users: key column \"email\" is null") &&
                          Contains("not part of the replica identity") &&
                          Contains("REPLICA IDENTITY"));
}

TEST_CASE("a null key column in a new tuple is a mapping error that shows no values", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    auto rule = users_rule();
    rule.key_columns = {"email"};
    const auto mapping = BoundMapping::bind(rule, line<pgoutput::Relation>(m, 2));
    CHECK_NOTHROW(mapping.map_new(line<pgoutput::Insert>(m, 3).new_tuple, nullptr));
    const auto message =
        mapping_error([&] { mapping.map_new(line<pgoutput::Insert>(m, 4).new_tuple, nullptr); });
    CHECK(message == "mapping public.users: key column \"email\" is null");
}

TEST_CASE("a key column sent as unchanged TOAST is taken from the old tuple", "[mapping]") {
    const auto m = test::decode_fixture("key_change");
    const auto& update = line<pgoutput::Update>(m, 3);
    auto rule = users_rule();
    rule.fields.push_back({"user_id", "id"});
    const auto mapping = BoundMapping::bind(rule, line<pgoutput::Relation>(m, 2));
    TupleData new_tuple = update.new_tuple;
    new_tuple[0] = {ColumnKind::UnchangedToast, ""};

    const auto image = mapping.map_new(new_tuple, &update.old_tuple);
    CHECK(image.key == "1");
    CHECK_FALSE(image.partial);
    CHECK(parse(image.to_json())["user_id"] == 1);

    CHECK_THROWS_WITH(mapping.map_new(new_tuple, nullptr),
                      Contains("key column \"id\" is unchanged TOAST"));
    const TupleData no_old;  // an Update without an old tuple
    CHECK_THROWS_AS(mapping.map_new(new_tuple, &no_old), MappingError);
}

TEST_CASE("a column in binary format is a mapping error", "[mapping]") {
    const auto m = test::decode_fixture("binary");
    const auto& relation = line<pgoutput::Relation>(m, 2);
    const auto& insert = line<pgoutput::Insert>(m, 3);
    REQUIRE(insert.new_tuple.at(1).kind == ColumnKind::Binary);
    const auto mapping =
        BoundMapping::bind(rule_for("accounts", {{"display_name", "name"}}), relation);
    CHECK_THROWS_WITH(mapping.map_new(insert.new_tuple, nullptr),
                      Contains("key column \"id\" is in binary format"));
    CHECK_THROWS_AS(mapping.key_of_old(insert.new_tuple), MappingError);
}

TEST_CASE("every type in types.hex converts to its expected JSON", "[mapping]") {
    const auto m = test::decode_fixture("types");
    const auto& relation = line<pgoutput::Relation>(m, 2);
    REQUIRE(relation.columns.size() == 16);
    std::vector<FieldRule> fields;
    for (const auto& c : relation.columns) fields.push_back({c.name, c.name});
    const auto mapping = BoundMapping::bind(rule_for("all_types", fields), relation);
    const auto image = mapping.map_new(line<pgoutput::Insert>(m, 3).new_tuple, nullptr);

    CHECK(image.key == "1");
    const std::string expected =
        R"({"id":1,"c_int2":32767,"c_int8":9007199254740993,"c_numeric":12345678.9012,)"
        R"("c_float8":3.14159,"c_bool":true,"c_text":"h\u00e9llo w\u00f6rld",)"
        R"("c_varchar":"varchar",)"
        R"("c_uuid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","c_date":"2024-01-02",)"
        R"("c_timestamp":"2024-01-02T03:04:05.123456Z",)"
        R"("c_timestamptz":"2024-01-02T03:04:05.123456Z","c_jsonb":{"a": null, "b": [1, 2]},)"
        R"("c_json":{"b":[1,2],  "a":null},"c_bytea":"\\xdeadbeef",)"
        R"("c_text_arr":"{a,\"b c\",NULL,\"d\\\"e\"}"})";
    // UTF-8 passes through unescaped: compare the raw text with the escapes spelled out.
    std::string actual = image.to_json();
    CHECK(actual.find("h\xC3\xA9llo w\xC3\xB6rld") != std::string::npos);
    auto replace = [&](const std::string& from, const std::string& to) {
        actual.replace(actual.find(from), from.size(), to);
    };
    replace("\xC3\xA9", "\\u00e9");
    replace("\xC3\xB6", "\\u00f6");
    CHECK(actual == expected);

    const auto json = parse(image.to_json());
    CHECK(json["c_text"] == "h\xC3\xA9llo w\xC3\xB6rld");
    CHECK(json["c_bytea"] == "\\xdeadbeef");
    CHECK(json["c_text_arr"] == "{a,\"b c\",NULL,\"d\\\"e\"}");
    CHECK(json["c_jsonb"] == nlohmann::json{{"a", nullptr}, {"b", {1, 2}}});
}

TEST_CASE("epoch_millis and text conversions of types.hex columns", "[mapping]") {
    const auto m = test::decode_fixture("types");
    const auto& relation = line<pgoutput::Relation>(m, 2);
    const auto mapping =
        BoundMapping::bind(rule_for("all_types",
                                    {
                                        {"date", "c_date", Conversion::EpochMillis},
                                        {"ts", "c_timestamp", Conversion::EpochMillis},
                                        {"tstz", "c_timestamptz", Conversion::EpochMillis},
                                        {"int8", "c_int8", Conversion::EpochMillis},
                                        {"int2", "c_int2", Conversion::EpochMillis},
                                        {"numeric", "c_numeric", Conversion::EpochMillis},
                                        {"int8_text", "c_int8", Conversion::Text},
                                        {"jsonb_text", "c_jsonb", Conversion::Text},
                                        {"bool_text", "c_bool", Conversion::Text},
                                    }),
                           relation);
    const auto image = mapping.map_new(line<pgoutput::Insert>(m, 3).new_tuple, nullptr);
    CHECK(image.to_json() ==
          R"({"id":"1","date":1704153600000,"ts":1704164645123,"tstz":1704164645123,)"
          R"("int8":9007199254740993,"int2":32767,"numeric":12345678,)"
          R"("int8_text":"9007199254740993","jsonb_text":"{\"a\": null, \"b\": [1, 2]}",)"
          R"("bool_text":"t"})");
    CHECK_NOTHROW(parse(image.to_json()));
}

TEST_CASE("a mapping still finds its columns after a Relation message adds one", "[mapping]") {
    const auto m = test::decode_fixture("relation_resent");
    const auto& r7 = line<pgoutput::Relation>(m, 2);
    const auto& r8 = line<pgoutput::Relation>(m, 6);
    const auto& r7_dropped = line<pgoutput::Relation>(m, 10);
    REQUIRE(r7.relation_id == r8.relation_id);
    REQUIRE(r8.columns.size() == 8);

    auto rule = rule_for("users", {{"display_name", "name"}, {"primary_email", "email"}});
    const auto before = BoundMapping::bind(rule, r7);
    CHECK(before.map_new(line<pgoutput::Insert>(m, 3).new_tuple, nullptr).to_json() ==
          R"({"id":"1","display_name":"alice","primary_email":"alice@example.com"})");
    // The old binding does not read a wider tuple: it asks to be rebound.
    CHECK_THROWS_WITH(before.map_new(line<pgoutput::Insert>(m, 7).new_tuple, nullptr),
                      Contains("has 8 columns but the bound relation has 7") && Contains("rebind"));

    rule.fields.push_back({"phone", "phone"});
    const auto after = BoundMapping::bind(rule, r8);
    CHECK(after.map_new(line<pgoutput::Insert>(m, 7).new_tuple, nullptr).to_json() ==
          R"({"id":"2","display_name":"bob","primary_email":"bob@example.com",)"
          R"("phone":"+1-555-0100"})");

    // email was dropped: the binding fails, naming what is left.
    CHECK_THROWS_WITH(BoundMapping::bind(rule, r7_dropped),
                      "mapping public.users: column \"email\" (raw_json key \"primary_email\") "
                      "not found in the relation's columns (id, name, created_at, metadata, "
                      "active, bio, phone) (hint: if the table has it, the publication's "
                      "column list leaves it out: add it with ALTER PUBLICATION ... SET TABLE; "
                      "`authsync check` names it)");
    const auto without_email = BoundMapping::bind(
        rule_for("users", {{"display_name", "name"}, {"phone", "phone"}}), r7_dropped);
    CHECK(without_email.map_new(line<pgoutput::Insert>(m, 11).new_tuple, nullptr).to_json() ==
          R"({"id":"3","display_name":"carol","phone":"+1-555-0101"})");
}

// ---- bind ------------------------------------------------------------------------------------

TEST_CASE("bind fails clearly when a mapped column is not in the relation", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    const auto& relation = line<pgoutput::Relation>(m, 2);
    CHECK_THROWS_WITH(
        BoundMapping::bind(rule_for("users", {{"primary_email", "emial"}}), relation),
        "mapping public.users: column \"emial\" (raw_json key \"primary_email\") not found in "
        "the relation's columns (id, name, email, created_at, metadata, active, bio) "
        "(hint: if the table has it, the publication's column list leaves it out: "
        "add it with ALTER PUBLICATION ... SET TABLE; `authsync check` names it)");
    CHECK_THROWS_WITH(BoundMapping::bind(rule_for("users", {}, {"user_id"}), relation),
                      "mapping public.users: key column \"user_id\" not found in the relation's "
                      "columns (id, name, email, created_at, metadata, active, bio)");
    CHECK_THROWS_WITH(BoundMapping::bind(rule_for("users", {}, {}), relation),
                      Contains("no key columns"));
}

TEST_CASE("bind refuses a relation other than the rule's source table", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    auto rule = users_rule();
    rule.source_table = "accounts";
    CHECK_THROWS_WITH(BoundMapping::bind(rule, line<pgoutput::Relation>(m, 2)),
                      "mapping public.accounts: cannot bind to relation public.users");
}

TEST_CASE("bind refuses epoch_millis on a column whose type has no instant", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    CHECK_THROWS_WITH(
        BoundMapping::bind(rule_for("users", {{"x", "name", Conversion::EpochMillis}}),
                           line<pgoutput::Relation>(m, 2)),
        Contains("column \"name\" (raw_json key \"x\") has type oid 25; epoch_millis applies "
                 "only to"));
    CHECK_THROWS_WITH(
        BoundMapping::bind(rule_for("users", {{"x", "active", Conversion::EpochMillis}}),
                           line<pgoutput::Relation>(m, 2)),
        Contains("has type bool"));
}

TEST_CASE("bind refuses a raw_json key mapped twice", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    CHECK_THROWS_WITH(BoundMapping::bind(rule_for("users", {{"n", "name"}, {"n", "email"}}),
                                         line<pgoutput::Relation>(m, 2)),
                      "mapping public.users: raw_json key \"n\" is mapped twice");
}

TEST_CASE("a field named id replaces the key in raw_json and must be the key column", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    const auto& relation = line<pgoutput::Relation>(m, 2);
    const auto& alice = line<pgoutput::Insert>(m, 3).new_tuple;

    const auto as_number =
        BoundMapping::bind(rule_for("users", {{"display_name", "name"}, {"id", "id"}}), relation);
    const auto image = as_number.map_new(alice, nullptr);
    CHECK(image.key == "1");
    CHECK(image.to_json() == R"({"display_name":"alice","id":1})");

    const auto as_text =
        BoundMapping::bind(rule_for("users", {{"id", "id", Conversion::Text}}), relation);
    CHECK(as_text.map_new(alice, nullptr).to_json() == R"({"id":"1"})");

    CHECK_THROWS_WITH(BoundMapping::bind(rule_for("users", {{"id", "email"}}), relation),
                      Contains("raw_json key \"id\" must come from the single key column") &&
                          Contains("\"email\""));
    CHECK_THROWS_AS(
        BoundMapping::bind(rule_for("users", {{"id", "id"}}, {"id", "email"}), relation),
        MappingError);
}

TEST_CASE("several key columns are joined with a colon", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    const auto mapping =
        BoundMapping::bind(rule_for("users", {{"display_name", "name"}}, {"id", "name"}),
                           line<pgoutput::Relation>(m, 2));
    const auto image = mapping.map_new(line<pgoutput::Insert>(m, 3).new_tuple, nullptr);
    CHECK(image.key == "1:alice");
    CHECK(image.to_json() == R"({"id":"1:alice","display_name":"alice"})");

    const auto d = test::decode_fixture("delete");
    const auto on_delete =
        BoundMapping::bind(rule_for("users", {}, {"id", "name"}), line<pgoutput::Relation>(d, 2));
    CHECK_THROWS_WITH(on_delete.key_of_old(line<pgoutput::Delete>(d, 3).old_tuple),
                      Contains("key column \"name\" is null in the old tuple"));
}

TEST_CASE("a bound mapping keeps its own copy of the rule", "[mapping]") {
    const auto m = test::decode_fixture("insert");
    auto rule = users_rule();
    const auto mapping = BoundMapping::bind(rule, line<pgoutput::Relation>(m, 2));
    rule.source_table = "changed";
    rule.fields.clear();
    CHECK(mapping.rule().source_table == "users");
    CHECK(mapping.rule().fields.size() == 6);
    CHECK(mapping.map_new(line<pgoutput::Insert>(m, 3).new_tuple, nullptr).field_count() == 7);
}

TEST_CASE("conversion errors name relation, column, key and type but never the value",
          "[mapping]") {
    const auto m = test::decode_fixture("insert");
    const auto mapping = BoundMapping::bind(users_rule(), line<pgoutput::Relation>(m, 2));
    TupleData tuple = line<pgoutput::Insert>(m, 3).new_tuple;
    tuple[3].value = "alice-secret";  // created_at
    const auto message = mapping_error([&] { mapping.map_new(tuple, nullptr); });
    CHECK(message ==
          "mapping public.users: column \"created_at\" (raw_json key \"signed_up_at_millis\", "
          "type timestamptz): invalid timestamptz text");
    CHECK(message.find("secret") == std::string::npos);
}

// ---- column_to_json ----------------------------------------------------------------------------

TEST_CASE("bool text converts to true and false and nothing else", "[mapping]") {
    CHECK(auto_json("t", kBool) == "true");
    CHECK(auto_json("f", kBool) == "false");
    CHECK_THROWS_AS(auto_json("true", kBool), MappingError);
    CHECK_THROWS_AS(auto_json("", kBool), MappingError);
    CHECK(column_to_json("t", kBool, Conversion::Text) == R"("t")");
}

TEST_CASE("integers pass through as JSON numbers after validation", "[mapping]") {
    CHECK(auto_json("32767", kInt2) == "32767");
    CHECK(auto_json("-42", kInt4) == "-42");
    CHECK(auto_json("9007199254740993", kInt8) == "9007199254740993");
    CHECK(auto_json("4294967295", kOid) == "4294967295");
    CHECK(auto_json("0", kInt4) == "0");
    CHECK(auto_json("007", kInt4) == "7");  // JSON has no leading zeros
    CHECK(auto_json("+5", kInt4) == "5");
    for (const char* bad : {"", "-", "4x", "--1", "1.0", "1e3", " "}) {
        INFO(bad);
        CHECK_THROWS_WITH(auto_json(bad, kInt4), "invalid int4 text");
    }
    CHECK(millis_json("-1000", kInt8) == "-1000");
}

TEST_CASE("numeric and float text becomes a valid JSON number, or a string for NaN and infinities",
          "[mapping]") {
    for (auto [in, out] : std::vector<std::pair<const char*, const char*>>{
             {"1234.50", "1234.50"},
             {"-0.01", "-0.01"},
             {"12345678.9012", "12345678.9012"},
             {"1e+20", "1e+20"},
             {"1.5e-07", "1.5e-07"},
             {"-1.7976931348623157e+308", "-1.7976931348623157e+308"},
             {"+1.5", "1.5"},
             {".5", "0.5"},
             {"-.5", "-0.5"},
             {"1.", "1"},
             {"00.5", "0.5"},
             {"1E5", "1e5"},
             {"-0", "-0"},
             {"NaN", R"("NaN")"},
             {"Infinity", R"("Infinity")"},
             {"-Infinity", R"("-Infinity")"},
             {"inf", R"("Infinity")"},
         }) {
        INFO(in);
        for (auto type : {kNumeric, kFloat4, kFloat8}) {
            CHECK(auto_json(in, type) == out);
            CHECK_NOTHROW(parse(auto_json(in, type)));
        }
    }
    for (const char* bad : {"", "-", ".", "1e", "1e+", "1.2.3", "abc", "0x10", "1,5", "- 1"}) {
        INFO(bad);
        CHECK_THROWS_WITH(auto_json(bad, kNumeric), "invalid numeric text");
        CHECK_THROWS_WITH(auto_json(bad, kFloat8), "invalid float8 text");
    }
}

TEST_CASE("epoch_millis on numeric rounds toward negative infinity", "[mapping]") {
    CHECK(millis_json("1704164645000", kNumeric) == "1704164645000");
    CHECK(millis_json("1704164645000.000", kNumeric) == "1704164645000");
    CHECK(millis_json("1.9", kNumeric) == "1");
    CHECK(millis_json("-1.5", kNumeric) == "-2");
    CHECK(millis_json("-2.000", kNumeric) == "-2");
    CHECK(millis_json("-0.5", kNumeric) == "-1");
    CHECK_THROWS_AS(millis_json("NaN", kNumeric), MappingError);
    CHECK_THROWS_AS(millis_json("Infinity", kNumeric), MappingError);
    CHECK_THROWS_WITH(millis_json("99999999999999999999", kNumeric), Contains("out of range"));
}

TEST_CASE("json and jsonb are embedded as sent, trimmed", "[mapping]") {
    CHECK(auto_json(R"({"a": [1, 2.50, "x"]})", kJsonb) == R"({"a": [1, 2.50, "x"]})");
    CHECK(auto_json("  [1,2]\n", kJson) == "[1,2]");
    CHECK(auto_json("null", kJson) == "null");
    CHECK(auto_json(R"("s")", kJsonb) == R"("s")");
    CHECK_THROWS_AS(auto_json("  ", kJsonb), MappingError);
    CHECK(column_to_json(R"({"a":1})", kJsonb, Conversion::Text) == R"("{\"a\":1}")");
}

TEST_CASE("timestamptz converts to ISO-8601 UTC using its offset", "[mapping]") {
    CHECK(auto_json("2024-01-02 03:04:05+00", kTimestamptz) == R"("2024-01-02T03:04:05Z")");
    CHECK(auto_json("2024-01-02 03:04:05.123456+00", kTimestamptz) ==
          R"("2024-01-02T03:04:05.123456Z")");
    CHECK(auto_json("1999-12-31 23:59:59.5+00", kTimestamptz) ==
          R"("1999-12-31T23:59:59.500000Z")");
    CHECK(auto_json("2024-01-02 03:04:05+05:30", kTimestamptz) == R"("2024-01-01T21:34:05Z")");
    CHECK(auto_json("2024-01-02 03:04:05+0530", kTimestamptz) == R"("2024-01-01T21:34:05Z")");
    CHECK(auto_json("2024-01-02 03:04:05-07", kTimestamptz) == R"("2024-01-02T10:04:05Z")");
    CHECK(auto_json("2023-12-31 23:30:00-01", kTimestamptz) == R"("2024-01-01T00:30:00Z")");
    CHECK(auto_json("2024-03-01 00:15:00+01", kTimestamptz) == R"("2024-02-29T23:15:00Z")");
    // Local mean time offsets have seconds.
    CHECK(auto_json("1900-01-01 00:00:00+00:53:28", kTimestamptz) == R"("1899-12-31T23:06:32Z")");
    CHECK(auto_json("2024-01-02T03:04:05Z", kTimestamptz) == R"("2024-01-02T03:04:05Z")");
    // More than six fraction digits are cut to microseconds.
    CHECK(auto_json("2024-01-02 03:04:05.1234567+00", kTimestamptz) ==
          R"("2024-01-02T03:04:05.123456Z")");
    CHECK(millis_json("2024-01-02 03:04:05+00", kTimestamptz) == "1704164645000");
    CHECK(millis_json("2024-01-02 03:04:05.123999+00", kTimestamptz) == "1704164645123");
    CHECK(millis_json("1999-12-31 23:59:59.5+00", kTimestamptz) == "946684799500");
    CHECK(millis_json("2024-01-02 03:04:05+05:30", kTimestamptz) == "1704144845000");
}

TEST_CASE("timestamps before 1970 give negative epoch millis rounded toward negative infinity",
          "[mapping]") {
    CHECK(millis_json("1969-12-31 23:59:59.9995+00", kTimestamptz) == "-1");
    CHECK(millis_json("1969-12-31 23:59:59.999+00", kTimestamptz) == "-1");
    CHECK(millis_json("1969-12-31 23:59:59.001+00", kTimestamptz) == "-999");
    CHECK(millis_json("1969-12-31 23:59:59+00", kTimestamptz) == "-1000");
    CHECK(millis_json("1970-01-01 00:00:00+00", kTimestamptz) == "0");
    CHECK(millis_json("1960-01-01 00:00:00+00", kTimestamptz) == "-315619200000");
    CHECK(millis_json("1960-01-01 00:00:00", kTimestamp) == "-315619200000");
    CHECK(millis_json("1960-01-01", kDate) == "-315619200000");
}

TEST_CASE("BC timestamps use astronomical years in ISO-8601 and in epoch millis", "[mapping]") {
    CHECK(auto_json("0044-03-15 12:00:00+00 BC", kTimestamptz) == R"("-000043-03-15T12:00:00Z")");
    CHECK(millis_json("0044-03-15 12:00:00+00 BC", kTimestamptz) == "-63517780800000");
    CHECK(auto_json("0044-03-15 12:00:00 BC", kTimestamp) == R"("-000043-03-15T12:00:00Z")");
    CHECK(auto_json("0044-03-15 BC", kDate) == R"("-000043-03-15")");
    // 1 BC is year 0, a leap year.
    CHECK(auto_json("0001-02-29 BC", kDate) == R"("0000-02-29")");
    CHECK_THROWS_AS(auto_json("0002-02-29 BC", kDate), MappingError);
    CHECK(auto_json("10000-01-01 00:00:00+00", kTimestamptz) == R"("+010000-01-01T00:00:00Z")");
    CHECK(auto_json("294276-12-31 23:59:59.999999+00", kTimestamptz) ==
          R"("+294276-12-31T23:59:59.999999Z")");
    CHECK(millis_json("294276-12-31 23:59:59.999999+00", kTimestamptz) == "9224318015999999");
}

TEST_CASE("infinite timestamps are strings in ISO form and errors as epoch millis", "[mapping]") {
    CHECK(auto_json("infinity", kTimestamptz) == R"("infinity")");
    CHECK(auto_json("-infinity", kTimestamptz) == R"("-infinity")");
    CHECK(auto_json("infinity", kTimestamp) == R"("infinity")");
    CHECK(auto_json("-infinity", kDate) == R"("-infinity")");
    CHECK_THROWS_WITH(millis_json("infinity", kTimestamptz),
                      "timestamptz infinity has no epoch_millis value");
    CHECK_THROWS_AS(millis_json("-infinity", kDate), MappingError);
}

TEST_CASE("timestamp without time zone and date are read as UTC", "[mapping]") {
    CHECK(auto_json("2024-01-02 03:04:05.123456", kTimestamp) ==
          R"("2024-01-02T03:04:05.123456Z")");
    CHECK(auto_json("2024-01-02 03:04:05", kTimestamp) == R"("2024-01-02T03:04:05Z")");
    CHECK(millis_json("2024-01-02 03:04:05.123456", kTimestamp) == "1704164645123");
    CHECK(auto_json("2024-01-02", kDate) == R"("2024-01-02")");
    CHECK(millis_json("2024-01-02", kDate) == "1704153600000");
    CHECK(auto_json("2024-02-29", kDate) == R"("2024-02-29")");
}

TEST_CASE("malformed dates and times are mapping errors", "[mapping]") {
    for (const char* bad :
         {"", "2024-01-02", "2024-01-02 03:04", "2024-13-02 03:04:05+00", "2024-02-30 00:00:00+00",
          "2023-02-29 00:00:00+00", "2024-01-02 24:00:00+00", "2024-01-02 03:60:00+00",
          "2024-01-02 03:04:05+16", "2024-01-02 03:04:05+00 XX", "0000-01-01 00:00:00+00",
          "2024-01-02 03:04:05.+00", "Tue Jan 02 03:04:05 2024 UTC", "2024/01/02 03:04:05"}) {
        INFO(bad);
        CHECK_THROWS_WITH(auto_json(bad, kTimestamptz), "invalid timestamptz text");
    }
    CHECK_THROWS_WITH(auto_json("2024-01-02 03:04:05", kDate), "invalid date text");
    CHECK_THROWS_WITH(auto_json("2024-02-30", kDate), "invalid date text");
}

TEST_CASE("other types and the text conversion give JSON strings", "[mapping]") {
    CHECK(auto_json("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", kUuid) ==
          R"("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")");
    CHECK(auto_json("\\xdeadbeef", 17) == R"("\\xdeadbeef")");
    CHECK(auto_json("{1,2}", 1007) == R"("{1,2}")");
    CHECK(auto_json("happy", 16390) == R"("happy")");  // an enum or domain: a user type OID
    CHECK(column_to_json("42", kInt4, Conversion::Text) == R"("42")");
    CHECK(column_to_json("2024-01-02 03:04:05+00", kTimestamptz, Conversion::Text) ==
          R"("2024-01-02 03:04:05+00")");
    CHECK_THROWS_WITH(millis_json("x", kText), "epoch_millis does not apply to type oid 25");
    CHECK_THROWS_WITH(millis_json("1.5", kFloat8), "epoch_millis does not apply to type float8");
}

TEST_CASE("JSON strings escape quotes, backslashes and control characters", "[mapping]") {
    CHECK(json_quote("") == R"("")");
    CHECK(json_quote(R"(say "hi" \ bye)") == R"("say \"hi\" \\ bye")");
    CHECK(json_quote("\n\t\r\b\f") == R"("\n\t\r\b\f")");
    CHECK(json_quote(std::string("\x01\x1f\0x", 4)) == R"("\u0001\u001f\u0000x")");
    CHECK(json_quote("\x7f") == "\"\x7f\"");
    std::string all_controls;
    for (char c = 0; c < 0x20; ++c) all_controls += c;
    const auto quoted = json_quote(all_controls);
    CHECK(parse(quoted).get<std::string>() == all_controls);
}

TEST_CASE("JSON strings pass valid UTF-8 through unchanged", "[mapping]") {
    const std::string text = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80 \xE4\xB8\xAD\xEF\xBF\xBF";
    CHECK(json_quote(text) == "\"" + text + "\"");
    CHECK(parse(json_quote(text)).get<std::string>() == text);
    // The largest code point and the first after the surrogates.
    CHECK(json_quote("\xF4\x8F\xBF\xBF\xEE\x80\x80") == "\"\xF4\x8F\xBF\xBF\xEE\x80\x80\"");
}

TEST_CASE("invalid UTF-8 is passed on as it is for the target to reject, never replaced",
          "[mapping]") {
    // A SQL_ASCII provider can hold any bytes: the target's UTF-8 check makes such a change a
    // row error (dead letter or stop), instead of a silent U+FFFD in users_sync.
    CHECK(json_quote("\xFF") == "\"\xFF\"");
    CHECK(json_quote("a\xC3") == "\"a\xC3\"");                // truncated at the end
    CHECK(json_quote("\xE2\x82x") == "\"\xE2\x82x\"");        // truncated
    CHECK(json_quote("\xC0\x80") == "\"\xC0\x80\"");          // overlong
    CHECK(json_quote("\xED\xA0\x80") == "\"\xED\xA0\x80\"");  // a surrogate
    // The bytes of an ill-formed sequence never swallow a quote or a backslash after them.
    CHECK(json_quote("\x80\"") == "\"\x80\\\"\"");
    CHECK(json_quote("\xE2\\") == "\"\xE2\\\\\"");
    for (const char* bad : {"\xFF", "a\xC3", "\xC0\x80", "\xED\xA0\x80", "\xF8\x88\x80\x80\x80"}) {
        CHECK_FALSE(is_valid_utf8(json_quote(bad)));
        CHECK_FALSE(is_valid_utf8(auto_json(bad, kText)));
    }
    CHECK(is_valid_utf8("\xF4\x8F\xBF\xBF\xEE\x80\x80 ascii \xC3\xA9"));
}

// ---- RowImage --------------------------------------------------------------------------------

TEST_CASE("to_json renders compact JSON with keys quoted, in field order", "[mapping]") {
    RowImage image = image_of({{"id", R"("1")"}, {"display_name", R"("Ada")"}, {"we\"ird", "2"}});
    image.key = "1";
    CHECK(image.to_json() == R"({"id":"1","display_name":"Ada","we\"ird":2})");
    CHECK(RowImage{}.to_json() == "{}");
}

TEST_CASE("merge_from lets later values win and appends new keys", "[mapping]") {
    RowImage older = image_of({{"id", R"("1")"}, {"name", R"("a")"}, {"bio", R"("long")"}});
    older.key = "1";
    RowImage newer = image_of({{"id", R"("1")"}, {"name", R"("b")"}, {"phone", R"("5")"}});
    newer.key = "1";
    newer.partial = true;
    older.merge_from(newer);
    CHECK(older.to_json() == R"({"id":"1","name":"b","bio":"long","phone":"5"})");
    CHECK(older.key == "1");
}

TEST_CASE("a merged image is partial only when both images were partial", "[mapping]") {
    auto merged = [](bool older_partial, bool newer_partial) {
        RowImage older = image_of({{"id", R"("1")"}});
        older.key = "1";
        older.partial = older_partial;
        RowImage newer = older;
        newer.partial = newer_partial;
        older.merge_from(newer);
        return older.partial;
    };
    CHECK_FALSE(merged(false, false));
    CHECK_FALSE(merged(false, true));  // the full older image supplies the unchanged values
    CHECK_FALSE(merged(true, false));  // the full newer image has every key
    CHECK(merged(true, true));
}

TEST_CASE("merging a TOAST-unchanged update over an insert gives a full image", "[mapping]") {
    const auto ins = test::decode_fixture("insert");
    const auto upd = test::decode_fixture("toast_unchanged");
    const auto mapping = BoundMapping::bind(users_rule(), line<pgoutput::Relation>(ins, 2));
    auto image = mapping.map_new(line<pgoutput::Insert>(ins, 3).new_tuple, nullptr);
    const auto update = mapping.map_new(line<pgoutput::Update>(upd, 3).new_tuple, nullptr);
    REQUIRE(update.partial);
    image.merge_from(update);
    CHECK_FALSE(image.partial);
    const auto json = parse(image.to_json());
    CHECK(json["display_name"] == "alice2");
    CHECK(json["bio"].is_null());  // from the insert
    CHECK(json.size() == 7);
}

TEST_CASE("merge_from matches keys that need escaping, and reads values back", "[mapping]") {
    RowImage older = image_of({{"we\"ird", "1"}, {"a\\b", R"({"x":[1,2]})"}});
    RowImage newer = image_of({{"a\\b", "null"}, {"we\"ird", "2"}, {"c", "3"}});
    older.merge_from(newer);
    CHECK(older.to_json() == R"({"we\"ird":2,"a\\b":null,"c":3})");
    CHECK(older.field_count() == 3);
    CHECK(older.value_of("we\"ird") == "2");
    CHECK(older.value_of("c") == "3");
    CHECK_FALSE(older.value_of("d").has_value());
    CHECK(parse(older.to_json()).size() == 3);
}

TEST_CASE("merging an image with itself changes nothing", "[mapping]") {
    RowImage image = image_of({{"id", R"("1")"}, {"name", R"("a")"}});
    image.key = "1";
    image.partial = true;
    image.merge_from(image);
    CHECK(image.to_json() == R"({"id":"1","name":"a"})");
    CHECK(image.partial);
}
