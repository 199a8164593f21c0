#include <utility>  // before Asio (Boost 1.74)

#include <fmt/format.h>
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "authsync/cli/commands.hpp"
#include "authsync/cli/decode_command.hpp"
#include "authsync/config/config.hpp"
#include "authsync/core/host_port.hpp"
#include "authsync/pg/async_connection.hpp"
#include "authsync/status/fields.hpp"

namespace authsync::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::use_awaitable;
using nlohmann::json;

namespace {

struct Url {
    bool https = false;
    std::string host;
    std::string port;
    std::string path;
};

std::optional<Url> parse_url(const std::string& url) {
    Url u;
    std::string rest;
    if (url.rfind("http://", 0) == 0) {
        rest = url.substr(7);
    } else if (url.rfind("https://", 0) == 0) {
        u.https = true;
        rest = url.substr(8);
    } else {
        return std::nullopt;
    }
    const std::string default_port = u.https ? "443" : "80";
    auto slash = rest.find('/');
    auto authority = rest.substr(0, slash);
    u.path = slash == std::string::npos ? "/status" : rest.substr(slash);
    if (u.path == "/") u.path = "/status";
    const HostPort hp = split_host_port(authority);
    if (!hp.problem.empty() || hp.host.empty()) return std::nullopt;
    u.host = hp.host;
    u.port = hp.port ? std::string(*hp.port) : default_port;
    return u;
}

// One GET over a connected stream (plain or TLS).
template <class Stream>
asio::awaitable<http::response<http::string_body>> fetch(Stream& stream, const Url& url) {
    http::request<http::empty_body> req{http::verb::get, url.path, 11};
    req.set(http::field::host, url.host);
    req.set(http::field::user_agent, "authsync status");
    if (const char* token = std::getenv("AUTHSYNC_STATUS_TOKEN")) {
        req.set(http::field::authorization, std::string("Bearer ") + token);
    }
    co_await http::async_write(stream, req, use_awaitable);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    co_await http::async_read(stream, buffer, res, use_awaitable);
    co_return res;
}

// GETs `url` (its /status document) into `body`; 0, or 2 with the reason printed as `who`'s.
int get_status(const std::string& url, const std::string& cacert, const std::string& who,
               std::string& body) {
    auto parsed = parse_url(url);
    if (!parsed) {
        std::cerr << who << ": cannot use URL " << url
                  << " (expected http://host:port or https://host:port)\n";
        return 2;
    }
    asio::io_context io;
    int http_status = 0;
    std::string failure;
    // https: the server's certificate is verified against --cacert, or the system's CAs, and
    // must name the URL's host.
    asio::ssl::context tls(asio::ssl::context::tls_client);
    if (parsed->https) {
        boost::system::error_code ec;
        tls.set_verify_mode(asio::ssl::verify_peer);
        if (cacert.empty()) {
            tls.set_default_verify_paths(ec);
        } else {
            tls.load_verify_file(cacert, ec);
        }
        if (ec) {
            std::cerr << who << ": cannot load CA certificates " << cacert << ": " << ec.message()
                      << '\n';
            return 2;
        }
    }
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            asio::ip::tcp::resolver resolver(ex);
            auto endpoints =
                co_await resolver.async_resolve(parsed->host, parsed->port, use_awaitable);
            http::response<http::string_body> res;
            if (parsed->https) {
                beast::ssl_stream<beast::tcp_stream> stream(ex, tls);
                beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
                co_await beast::get_lowest_layer(stream).async_connect(endpoints, use_awaitable);
                boost::system::error_code not_ip;
                asio::ip::make_address(parsed->host, not_ip);
                // SNI names hosts, never addresses (RFC 6066).
                if (not_ip &&
                    !SSL_set_tlsext_host_name(stream.native_handle(), parsed->host.c_str())) {
                    throw std::runtime_error("cannot set the TLS server name");
                }
                stream.set_verify_callback(asio::ssl::host_name_verification(parsed->host));
                co_await stream.async_handshake(asio::ssl::stream_base::client, use_awaitable);
                res = co_await fetch(stream, *parsed);
            } else {
                beast::tcp_stream stream(ex);
                stream.expires_after(std::chrono::seconds(5));
                co_await stream.async_connect(endpoints, use_awaitable);
                res = co_await fetch(stream, *parsed);
            }
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
        std::cerr << who << ": cannot reach " << url << ": " << failure << '\n';
        return 2;
    }
    if (http_status == 401) {
        std::cerr << who << ": " << url << " wants a token (set AUTHSYNC_STATUS_TOKEN)\n";
        return 2;
    }
    if (http_status != 200 && !json::accept(body)) {
        std::cerr << who << ": " << url << " answered " << http_status << " without JSON\n";
        return 2;
    }
    return 0;
}

}  // namespace

int status_command(const std::string& url, bool as_json, const std::string& cacert) {
    std::string body;
    if (int rc = get_status(url, cacert, "authsync status", body); rc != 0) return rc;
    // The document is read with the status model's own declaration (status/fields.hpp), and
    // the summary is rendered from it the same way.
    const auto report = status::read_status_json(body, status::fields());
    if (!report) {
        std::cerr << "authsync status: " << url << " answered without a status document\n";
        return 2;
    }
    if (as_json) {
        std::cout << json::parse(body).dump(2) << '\n';
    } else {
        std::cout << status::render_summary(*report, status::fields());
    }
    return report->ready ? 0 : 1;
}

int targets_command(const std::string& url, const std::string& cacert) {
    std::string body;
    if (int rc = get_status(url, cacert, "authsync targets", body); rc != 0) return rc;
    const auto doc = json::parse(body, nullptr, false);
    if (doc.is_discarded() || !doc.contains("targets") || !doc["targets"].is_object()) {
        std::cerr << "authsync targets: " << url << " shows no targets (an older authsync?)\n";
        return 2;
    }
    // Worst lag first, as the page lists them.
    std::vector<std::pair<std::string, json>> rows;
    for (const auto& [name, t] : doc["targets"].items()) rows.emplace_back(name, t);
    auto lag = [](const json& t) { return t.value("lag_bytes", std::int64_t{0}); };
    std::stable_sort(rows.begin(), rows.end(),
                     [&](const auto& a, const auto& b) { return lag(a.second) > lag(b.second); });
    std::cout << fmt::format("{:<24} {:<12} {:>14} {:>16} {:>12}\n", "target", "state", "lag_bytes",
                             "durable_lsn", "rows");
    bool all_streaming = true;
    for (const auto& [name, t] : rows) {
        std::int64_t applied = 0;
        if (t.contains("rows_applied") && t["rows_applied"].is_object()) {
            for (const auto& [mapping, ops] : t["rows_applied"].items()) {
                for (const auto& [op, n] : ops.items()) {
                    if (n.is_number_integer()) applied += n.get<std::int64_t>();
                }
            }
        }
        const auto state = t.value("state", std::string("?"));
        all_streaming = all_streaming && state == "streaming";
        std::cout << fmt::format("{:<24} {:<12} {:>14} {:>16} {:>12}\n", name, state, lag(t),
                                 t.value("durable_lsn", std::string("-")), applied);
    }
    return all_streaming ? 0 : 1;
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
    int rows = 0;
    try {
        auto conn = pg::Connection::connect(config.source.dsn);
        auto r = conn.exec_params(
            "SELECT encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, "
            "'proto_version', '1', 'publication_names', $3, 'messages', 'true')",
            pg::params(config.source.slot,
                       limit > 0 ? std::optional<std::string>(std::to_string(limit))
                                 : std::optional<std::string>(),
                       quote_identifier(config.source.publication)));
        rows = r.rows();
        for (int i = 0; i < rows; ++i) {
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
    const int rc = run_decode(in, std::cout, std::cerr, DecodeOptions{});
    if (limit > 0 && rows >= limit) {
        std::cerr << "authsync peek: stopped after " << rows
                  << " changes; the slot may hold more (--limit N for more, --limit 0 for all)\n";
    }
    return rc;
}

}  // namespace authsync::cli
