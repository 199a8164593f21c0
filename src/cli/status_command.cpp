#include <utility>  // before Asio (Boost 1.74)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <fmt/format.h>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "authsync/cli/commands.hpp"
#include "authsync/cli/decode_command.hpp"
#include "authsync/config/config.hpp"
#include "authsync/pg/async_connection.hpp"

namespace authsync::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::use_awaitable;
using nlohmann::json;

namespace {

struct Url {
    std::string host;
    std::string port;
    std::string path;
};

std::optional<Url> parse_url(const std::string& url) {
    const std::string scheme = "http://";
    if (url.rfind(scheme, 0) != 0) return std::nullopt;
    auto rest = url.substr(scheme.size());
    auto slash = rest.find('/');
    auto authority = rest.substr(0, slash);
    Url u;
    u.path = slash == std::string::npos ? "/status" : rest.substr(slash);
    if (u.path == "/") u.path = "/status";
    auto colon = authority.rfind(':');
    if (!authority.empty() && authority.front() == '[') {
        auto close = authority.find(']');
        u.host = authority.substr(1, close - 1);
        u.port = close + 1 < authority.size() ? authority.substr(close + 2) : "80";
    } else if (colon != std::string::npos) {
        u.host = authority.substr(0, colon);
        u.port = authority.substr(colon + 1);
    } else {
        u.host = authority;
        u.port = "80";
    }
    if (u.host.empty()) return std::nullopt;
    return u;
}

std::string human_bytes(std::uint64_t n) {
    if (n < 1024) return fmt::format("{} B", n);
    if (n < 1024 * 1024) return fmt::format("{:.1f} kB", static_cast<double>(n) / 1024);
    if (n < 1024ull * 1024 * 1024) return fmt::format("{:.1f} MB", static_cast<double>(n) / 1048576);
    return fmt::format("{:.1f} GB", static_cast<double>(n) / 1073741824);
}

std::string value_or(const json& j, const char* key, const std::string& fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

}  // namespace

int status_command(const std::string& url, bool as_json) {
    auto parsed = parse_url(url);
    if (!parsed) {
        std::cerr << "authsync status: cannot use URL " << url << " (expected http://host:port)\n";
        return 2;
    }
    asio::io_context io;
    int http_status = 0;
    std::string body;
    std::string failure;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            asio::ip::tcp::resolver resolver(ex);
            auto endpoints =
                co_await resolver.async_resolve(parsed->host, parsed->port, use_awaitable);
            beast::tcp_stream stream(ex);
            stream.expires_after(std::chrono::seconds(5));
            co_await stream.async_connect(endpoints, use_awaitable);
            http::request<http::empty_body> req{http::verb::get, parsed->path, 11};
            req.set(http::field::host, parsed->host);
            req.set(http::field::user_agent, "authsync status");
            if (const char* token = std::getenv("AUTHSYNC_STATUS_TOKEN")) {
                req.set(http::field::authorization, std::string("Bearer ") + token);
            }
            co_await http::async_write(stream, req, use_awaitable);
            beast::flat_buffer buffer;
            http::response<http::string_body> res;
            co_await http::async_read(stream, buffer, res, use_awaitable);
            http_status = static_cast<int>(res.result_int());
            body = res.body();
        },
        [&](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& err) {
                failure = err.what();
            }
        });
    io.run();
    if (!failure.empty()) {
        std::cerr << "authsync status: cannot reach " << url << ": " << failure << '\n';
        return 2;
    }
    if (http_status == 401) {
        std::cerr << "authsync status: " << url
                  << " wants a token (set AUTHSYNC_STATUS_TOKEN)\n";
        return 2;
    }
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception&) {
        std::cerr << "authsync status: " << url << " answered " << http_status
                  << " without JSON\n";
        return 2;
    }
    const bool ready = j.value("ready", false);
    if (as_json) {
        std::cout << j.dump(2) << '\n';
    } else {
        const auto& health = j.contains("slot_health") ? j["slot_health"] : json::object();
        std::cout << "state:    " << value_or(j, "state", "?") << (ready ? " (ready)" : " (not ready)")
                  << '\n';
        std::cout << "lag:      " << human_bytes(j.value("lag_bytes", 0ull)) << ", "
                  << fmt::format("{:.1f}", j.value("lag_seconds", 0.0)) << " s\n";
        std::cout << "applied:  " << value_or(j, "applied_lsn", "?") << " (provider at "
                  << value_or(j, "provider_wal_lsn", "?") << ")\n";
        std::cout << "latency:  "
                  << (j.contains("e2e_latency_ms") && !j["e2e_latency_ms"].is_null()
                          ? fmt::format("{:.1f} ms end to end", j["e2e_latency_ms"].get<double>())
                          : std::string("no heartbeat yet"))
                  << '\n';
        std::cout << "slot:     " << value_or(j, "slot", "?")
                  << " wal_status=" << value_or(health, "wal_status", "unknown");
        if (health.contains("retained_wal_bytes") && health["retained_wal_bytes"].is_number()) {
            std::cout << " retained=" << human_bytes(health["retained_wal_bytes"].get<std::uint64_t>());
        }
        std::cout << '\n';
        if (j.contains("last_error") && j["last_error"].is_object()) {
            std::cout << "error:    " << value_or(j["last_error"], "message", "") << " (at "
                      << value_or(j["last_error"], "at", "?") << ")\n";
        } else {
            std::cout << "error:    none\n";
        }
    }
    return ready ? 0 : 1;
}

int peek_command(const std::string& config_path, int limit) {
    config::Config config;
    try {
        config = config::load_config(config_path, config::process_env());
        pg::validate_dsn(config.source.dsn, "source.dsn");
    } catch (const ConfigError& e) {
        std::cerr << "authsync: " << e.what() << '\n';
        return 1;
    }
    std::string hex;
    try {
        auto conn = pg::Connection::connect(config.source.dsn);
        auto r = conn.exec_params(
            "SELECT encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, "
            "'proto_version', '1', 'publication_names', $3, 'messages', 'true')",
            pg::params(config.source.slot,
                       limit > 0 ? std::optional<std::string>(std::to_string(limit))
                                 : std::optional<std::string>(),
                       quote_identifier(config.source.publication)));
        for (int i = 0; i < r.rows(); ++i) {
            hex += r.get(i, 0);
            hex += '\n';
        }
    } catch (const pg::PgError& e) {
        std::cerr << "authsync peek: " << e.what() << '\n';
        if (e.is_object_in_use()) {
            std::cerr << "  hint: the slot is in use by a running authsync; PostgreSQL lets only "
                         "one process read a slot, so stop it first (nothing is lost)\n";
        }
        return 1;
    }
    std::istringstream in(hex);
    return run_decode(in, std::cout, std::cerr, DecodeOptions{});
}

}  // namespace authsync::cli
