#include "authsync/cli/log_format.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

namespace authsync::cli {

namespace {

bool is_key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

// The `key=value` words of a message, e.g. "streaming slot=s1 from lsn=0/16B3748".
void add_fields(nlohmann::ordered_json& out, std::string_view message) {
    std::size_t i = 0;
    while (i < message.size()) {
        while (i < message.size() && message[i] == ' ') ++i;
        const std::size_t start = i;
        while (i < message.size() && message[i] != ' ') ++i;
        const auto word = message.substr(start, i - start);
        const auto eq = word.find('=');
        if (eq == 0 || eq == std::string_view::npos || eq + 1 == word.size()) continue;
        const auto key = word.substr(0, eq);
        bool ok = true;
        for (char c : key) ok = ok && is_key_char(c);
        if (!ok) continue;
        auto value = word.substr(eq + 1);
        while (!value.empty() && (value.back() == ',' || value.back() == ';' ||
                                  value.back() == ')' || value.back() == ':')) {
            value.remove_suffix(1);
        }
        const std::string k(key);
        if (k == "time" || k == "level" || k == "logger" || k == "message") continue;
        out[k] = std::string(value);
    }
}

class JsonFormatter final : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        const auto level = spdlog::level::to_string_view(msg.level);
        const auto line =
            json_log_line(msg.time, std::string_view(level.data(), level.size()),
                          std::string_view(msg.logger_name.data(), msg.logger_name.size()),
                          std::string_view(msg.payload.data(), msg.payload.size()));
        dest.append(line.data(), line.data() + line.size());
        dest.push_back('\n');
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JsonFormatter>();
    }
};

// %* in the text pattern: the message, control characters escaped.
class EscapedMessage final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        const auto text = escape_control(std::string_view(msg.payload.data(), msg.payload.size()));
        dest.append(text.data(), text.data() + text.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<EscapedMessage>();
    }
};

}  // namespace

std::string escape_control(std::string_view message) {
    std::string out;
    out.reserve(message.size());
    for (char c : message) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u != 0x7f) {
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else {
            out += fmt::format("\\x{:02x}", u);
        }
    }
    return out;
}

std::unique_ptr<spdlog::formatter> make_text_formatter() {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<EscapedMessage>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ [%n] %*");
    return formatter;
}

std::string json_log_line(std::chrono::system_clock::time_point time, std::string_view level,
                          std::string_view logger, std::string_view message) {
    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(time.time_since_epoch()).count() % 1000;
    const auto seconds = time_point_cast<std::chrono::seconds>(time);
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    out["time"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z",
                              fmt::gmtime(system_clock::to_time_t(seconds)), ms);
    out["level"] = std::string(level);
    out["logger"] = std::string(logger);
    out["message"] = std::string(message);
    add_fields(out, message);
    return out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::unique_ptr<spdlog::formatter> make_json_formatter() {
    return std::make_unique<JsonFormatter>();
}

}  // namespace authsync::cli
