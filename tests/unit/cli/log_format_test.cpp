#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sstream>

#include "authsync/cli/log_format.hpp"

using namespace authsync::cli;
using nlohmann::json;

namespace {

std::chrono::system_clock::time_point at(long long ms) {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

}  // namespace

TEST_CASE("a json log line has time, level, logger and message, on one line", "[cli]") {
    const auto line = json_log_line(at(1'764'246'162'123), "info", "engine", "stopped");
    CHECK(line.find('\n') == std::string::npos);
    auto j = json::parse(line);
    CHECK(j["time"] == "2025-11-27T12:22:42.123Z");
    CHECK(j["level"] == "info");
    CHECK(j["logger"] == "engine");
    CHECK(j["message"] == "stopped");
    CHECK(j.size() == 4);
}

TEST_CASE("key=value words of a message become fields", "[cli]") {
    auto j = json::parse(
        json_log_line(at(0), "info", "engine", "streaming slot=authsync_1 from lsn=0/16B3748"));
    CHECK(j["slot"] == "authsync_1");
    CHECK(j["lsn"] == "0/16B3748");
    CHECK(j["message"] == "streaming slot=authsync_1 from lsn=0/16B3748");
    // Trailing punctuation is not part of a value; reserved and odd keys are left alone.
    j = json::parse(
        json_log_line(at(0), "warn", "engine", "a x=1, level=boom Key=2 =3 y= z=(4) lsn=0/1:"));
    CHECK(j["x"] == "1");
    CHECK(j["level"] == "warn");
    CHECK_FALSE(j.contains("Key"));
    CHECK_FALSE(j.contains("y"));
    CHECK(j["z"] == "(4");
    CHECK(j["lsn"] == "0/1");
}

TEST_CASE("quotes, control characters and invalid UTF-8 stay one valid JSON line", "[cli]") {
    const std::string message = "said \"hi\"\n\tnext line \xff\xfe end";
    const auto line = json_log_line(at(0), "error", "pg", message);
    CHECK(line.find('\n') == std::string::npos);
    auto j = json::parse(line);
    CHECK_THAT(j["message"].get<std::string>(), Catch::StartsWith("said \"hi\"\n\tnext line "));
    CHECK_THAT(j["message"].get<std::string>(), Catch::EndsWith(" end"));
}

TEST_CASE("a json log line starts with time, level, logger and message, in that order", "[cli]") {
    const auto line = json_log_line(at(0), "info", "engine", "streaming slot=s lsn=0/1");
    CHECK_THAT(
        line,
        Catch::StartsWith(
            R"({"time":"1970-01-01T00:00:00.000Z","level":"info","logger":"engine","message":")"));
}

TEST_CASE("the text format escapes control characters, so a message cannot start a line", "[cli]") {
    CHECK(escape_control("key a\n2030-01-01 error [engine] forged") ==
          "key a\\n2030-01-01 error [engine] forged");
    CHECK(escape_control("cr\r tab\t esc\x1b del\x7f nul") == "cr\\r tab\\t esc\\x1b del\\x7f nul");
    CHECK(escape_control("caf\xc3\xa9 stays") == "caf\xc3\xa9 stays");

    std::ostringstream out;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    sink->set_formatter(make_text_formatter());
    spdlog::logger logger("engine", sink);
    logger.warn("dead-lettered key {}", "k\n2030-01-01T00:00:00.000+0000 error [engine] forged");
    const auto line = out.str();
    CHECK(line.find('\n') == line.size() - 1);
    CHECK_THAT(line, Catch::Contains(" warning [engine] dead-lettered key k\\n2030-01-01T"));
}

TEST_CASE("a json log line escapes a newline in the message", "[cli]") {
    const auto line = json_log_line(at(0), "warn", "engine", "key a\nb");
    CHECK(line.find('\n') == std::string::npos);
    CHECK(json::parse(line)["message"] == "key a\nb");
}
