// Log line formats for --log-format: text (for people) and json (for log shippers).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace spdlog {
class formatter;
}

namespace authsync::cli {

enum class LogFormat { Text, Json };

// One log record as a single-line JSON object:
//   {"time":"2026-11-27T16:22:42.123Z","level":"info","logger":"engine","message":"...",
//    "slot":"authsync","lsn":"0/16B3748"}
// Every `key=value` word of the message (key: lower-case letters, digits and '_') also becomes a
// string field, unless it would replace time, level, logger or message. Text that is not valid
// UTF-8 is replaced, never dropped.
std::string json_log_line(std::chrono::system_clock::time_point time, std::string_view level,
                          std::string_view logger, std::string_view message);

// An spdlog formatter that writes json_log_line plus '\n'.
std::unique_ptr<spdlog::formatter> make_json_formatter();

// `message` with each control character written as an escape (`\n`, `\r`, `\t`, `\x1b`, ...),
// so that no text a message carries (a user's key, a server's message) can start a log line of
// its own.
std::string escape_control(std::string_view message);

// The text format, `2026-11-27T16:22:42.123+0000 info [engine] message`, the message passed
// through escape_control; the level in colour when the sink has colours.
std::unique_ptr<spdlog::formatter> make_text_formatter();

}  // namespace authsync::cli
