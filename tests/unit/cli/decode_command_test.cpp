#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "authsync/cli/decode_command.hpp"
#include "fixtures.hpp"

using namespace authsync;
using nlohmann::json;

namespace {

struct Run {
    int rc;
    std::vector<json> rows;
    std::string err;
};

Run decode(const std::string& input, cli::DecodeOptions options = {}) {
    std::istringstream in(input);
    std::ostringstream out, err;
    Run r{cli::run_decode(in, out, err, options), {}, err.str()};
    std::istringstream lines(out.str());
    std::string line;
    while (std::getline(lines, line)) r.rows.push_back(json::parse(line));
    return r;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

TEST_CASE("decode prints one JSON object per captured message", "[cli][decode]") {
    auto r = decode(read_file(test::fixture_path("pgoutput/toast_unchanged.hex")));
    REQUIRE(r.rc == 0);
    REQUIRE(r.rows.size() == 4);
    CHECK(r.rows[0]["type"] == "Begin");
    CHECK(r.rows[2]["type"] == "Update");
    CHECK(r.rows[2]["relation"] == "public.users");
    CHECK(r.rows[2]["new"][1] == json{{"name", "name"}, {"kind", "text"}, {"value", "alice2"}});
    CHECK(r.rows[2]["new"][6] == json{{"name", "bio"}, {"kind", "unchanged_toast"}});
    CHECK(r.rows[3]["type"] == "Commit");
    CHECK(r.rows[3]["end_lsn"].get<std::string>().find('/') != std::string::npos);
}

TEST_CASE("decode accepts the \\x prefix, CRLF and blank lines", "[cli][decode]") {
    auto lines = test::load_hex_fixture("pgoutput/update.hex");
    auto text = read_file(test::fixture_path("pgoutput/update.hex"));
    std::string with_prefix;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) with_prefix += "\\x" + line + "\r\n\n";
    auto r = decode(with_prefix);
    CHECK(r.rc == 0);
    CHECK(r.rows.size() == lines.size());
}

TEST_CASE("decode of CopyData frames shows keepalives and XLogData", "[cli][decode]") {
    cli::DecodeOptions o;
    o.copydata = true;
    auto r = decode(read_file(test::fixture_path("stream/insert_stream.hex")), o);
    REQUIRE(r.rc == 0);
    std::size_t keepalives = 0;
    for (const auto& row : r.rows) {
        if (row["frame"] == "Keepalive")
            ++keepalives;
        else
            CHECK(row["message"].contains("type"));
    }
    CHECK(keepalives >= 2);
}

TEST_CASE("decode stops at the first malformed line, naming it", "[cli][decode]") {
    auto good = read_file(test::fixture_path("pgoutput/update.hex"));
    auto r = decode(good + "4200ff\n" + good);
    CHECK(r.rc == 1);
    CHECK(r.rows.size() == 4);
    CHECK_THAT(r.err, Catch::Contains("line 5") && Catch::Contains("Begin message"));

    r = decode("not hex\n");
    CHECK(r.rc == 1);
    CHECK_THAT(r.err, Catch::Contains("line 1") && Catch::Contains("invalid hex"));
}

TEST_CASE("decode refuses DML for a relation it has not seen", "[cli][decode]") {
    auto lines = test::load_hex_fixture("pgoutput/insert.hex");
    auto text = read_file(test::fixture_path("pgoutput/insert.hex"));
    // Drop the Relation line (the second).
    std::istringstream in(text);
    std::string line, input;
    int n = 0;
    while (std::getline(in, line)) {
        if (++n != 2) input += line + "\n";
    }
    auto r = decode(input);
    CHECK(r.rc == 1);
    CHECK_THAT(r.err, Catch::Contains("unknown relation id"));
}
