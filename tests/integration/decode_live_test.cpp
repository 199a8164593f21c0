// `authsync decode` on messages peeked from a real slot: the user-visible decoder, end to end.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "pg_cluster.hpp"

using namespace authsync;
using nlohmann::json;

namespace {

test::PgCluster& provider() {
    static test::PgCluster cluster("provider");
    return cluster;
}

std::vector<json> decode_lines(const std::string& hex_lines, const std::string& args,
                               int expected_rc) {
    auto in = std::string("/tmp/authsync-decode-in-") + std::to_string(::getpid());
    {
        std::ofstream f(in);
        f << hex_lines;
    }
    auto cmd = std::string(AUTHSYNC_EXE) + " decode " + args + " <" + in + " 2>&1; echo rc=$?";
    auto out = test::run_shell_output(cmd);
    std::remove(in.c_str());
    std::vector<json> rows;
    std::istringstream lines(out);
    std::string line;
    int rc = -1;
    while (std::getline(lines, line)) {
        if (line.rfind("rc=", 0) == 0)
            rc = std::stoi(line.substr(3));
        else if (!line.empty() && line[0] == '{')
            rows.push_back(json::parse(line));
        else
            UNSCOPED_INFO(line);
    }
    CHECK(rc == expected_rc);
    return rows;
}

}  // namespace

TEST_CASE("authsync decode prints the changes peeked from a real pgoutput slot",
          "[decode][integration]") {
    auto& pg = provider();
    auto db = pg.create_database("decode");
    auto conn = pg.connect(db);
    conn.exec(R"(
        CREATE TABLE public.users (id int PRIMARY KEY, name text, email text, bio text,
                                   active boolean, meta jsonb);
        ALTER TABLE public.users ALTER COLUMN bio SET STORAGE EXTERNAL;
        CREATE PUBLICATION pub FOR TABLE public.users;
    )");
    conn.exec("SELECT pg_create_logical_replication_slot('s', 'pgoutput')");
    conn.exec(
        R"(INSERT INTO public.users VALUES (1, 'Ada', 'ada@example.com', repeat('x', 10000), true, '{"a": 1}'))");
    conn.exec("UPDATE public.users SET name = 'Ada L' WHERE id = 1");
    conn.exec("DELETE FROM public.users WHERE id = 1");
    auto res = conn.exec(
        "SELECT encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL, "
        "'proto_version', '1', 'publication_names', 'pub')");
    std::string hex;
    for (int i = 0; i < res.rows(); ++i) hex += "\\x" + std::string(res.get(i, 0)) + "\n";

    auto rows = decode_lines(hex, "", 0);
    // One transaction per statement: B R I C, B U C, B D C.
    std::vector<std::string> types;
    for (const auto& r : rows) types.push_back(r["type"]);
    CHECK(types == std::vector<std::string>{"Begin", "Relation", "Insert", "Commit", "Begin",
                                            "Update", "Commit", "Begin", "Delete", "Commit"});
    REQUIRE(rows.size() == 10);
    CHECK(rows[1]["namespace"] == "public");
    CHECK(rows[1]["name"] == "users");
    CHECK(rows[1]["columns"][0]["key"] == true);
    const auto& ins = rows[2]["new"];
    CHECK(rows[2]["relation"] == "public.users");
    CHECK(ins[0]["value"] == "1");
    CHECK(ins[1]["value"] == "Ada");
    CHECK(ins[2]["value"] == "ada@example.com");
    CHECK(ins[3]["value"].get<std::string>().size() == 10000);
    CHECK(ins[4]["value"] == "t");
    CHECK(ins[5]["value"] == "{\"a\": 1}");
    // The update left the TOASTed bio alone: it arrives as unchanged, with no value.
    const auto& upd = rows[5]["new"];
    CHECK(upd[1]["value"] == "Ada L");
    CHECK(upd[3]["kind"] == "unchanged_toast");
    CHECK_FALSE(upd[3].contains("value"));
    CHECK(rows[8]["old_kind"] == "key");
    CHECK(rows[8]["old"][0]["value"] == "1");
    CHECK(rows[8]["old"][1]["kind"] == "null");
    // Commit LSNs increase.
    CHECK(rows[3]["end_lsn"] != rows[6]["end_lsn"]);

    // Peeking did not consume anything.
    auto again = conn.exec(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('s', NULL, "
        "NULL, 'proto_version', '1', 'publication_names', 'pub')");
    CHECK(again.get(0, 0) == "10");
}

TEST_CASE("authsync decode stops with a clear error on a malformed line", "[decode][integration]") {
    // A Begin message cut short, after a valid one.
    std::string good = "4200000000016b37480000000000000000000002df\n";
    std::string bad = "420000000000\n";
    auto rows = decode_lines(good + bad, "", 1);
    CHECK(rows.size() == 1);
    auto out = test::run_shell_output("printf '4200\\n' | " + std::string(AUTHSYNC_EXE) +
                                      " decode 2>&1 || true");
    CHECK_THAT(out, Catch::Contains("line 1") && Catch::Contains("Begin message") &&
                        Catch::Contains("insufficient data"));
}
