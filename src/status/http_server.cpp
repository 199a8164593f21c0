#include "authsync/status/http_server.hpp"

#include <openssl/ssl.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "authsync/core/error.hpp"
#include "authsync/core/host_port.hpp"

namespace authsync::status {

namespace beast = boost::beast;
namespace http = beast::http;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kMaxRequestBytes = 8 * 1024;
constexpr auto kRequestTimeout = std::chrono::seconds(5);
// After a failed accept (EMFILE, ENFILE, ENOBUFS, ...): the connection stays queued and the
// next accept would fail at once, so wait this long instead of spinning.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
// A TLS close_notify exchange after the answer: short, the answer is already complete.
constexpr auto kShutdownTimeout = std::chrono::seconds(1);

tcp::endpoint parse_listen(const std::string& listen) {
    const HostPort hp = split_host_port(listen);
    if (!hp.problem.empty() || !hp.port) {
        throw ConfigError(fmt::format("status.listen: \"{}\" {}", listen,
                                      hp.problem.empty() ? "has no port" : hp.problem));
    }
    std::string host(hp.host);
    const std::string port(*hp.port);
    if (host == "localhost") host = "127.0.0.1";
    boost::system::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    if (ec) {
        throw ConfigError(fmt::format("status.listen: \"{}\" is not an IP address", host));
    }
    return {address, static_cast<unsigned short>(std::stoi(port))};
}

}  // namespace

HttpServer::HttpServer(asio::any_io_executor executor, ListenOptions listen, RouteOptions options,
                       SnapshotFn snapshot)
    : executor_(std::move(executor)),
      listen_(std::move(listen)),
      options_(std::move(options)),
      snapshot_(std::move(snapshot)) {}

HttpServer::~HttpServer() {
    stop();
}

void HttpServer::start() {
    auto endpoint = parse_listen(listen_.listen);
    if (!listen_.certificate_file.empty()) {
        auto tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
        tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::single_dh_use);
        SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION);
        boost::system::error_code ec;
        tls->use_certificate_chain_file(listen_.certificate_file, ec);
        if (ec) {
            throw ConfigError(fmt::format("status.tls: cannot load certificate {}: {}",
                                          listen_.certificate_file, ec.message()));
        }
        tls->use_private_key_file(listen_.key_file, asio::ssl::context::pem, ec);
        if (ec) {
            throw ConfigError(
                fmt::format("status.tls: cannot load key {}: {}", listen_.key_file, ec.message()));
        }
        if (SSL_CTX_check_private_key(tls->native_handle()) != 1) {
            throw ConfigError(fmt::format("status.tls: key {} does not match certificate {}",
                                          listen_.key_file, listen_.certificate_file));
        }
        tls_ = std::move(tls);
    }
    acceptor_ = std::make_unique<tcp::acceptor>(executor_);
    boost::system::error_code ec;
    acceptor_->open(endpoint.protocol(), ec);
    if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_->bind(endpoint, ec);
    if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        throw ConfigError(
            fmt::format("status endpoint: cannot listen on {}: {}", listen_.listen, ec.message()));
    }
    spdlog::info("status endpoint on {}://{}:{}/ max_connections={}", tls_ ? "https" : "http",
                 endpoint.address().to_string(), port(), listen_.max_connections);
    asio::co_spawn(executor_, accept_loop(), asio::detached);
}

void HttpServer::stop() {
    if (acceptor_) {
        boost::system::error_code ec;
        acceptor_->close(ec);
    }
}

std::uint16_t HttpServer::port() const {
    return acceptor_ ? acceptor_->local_endpoint().port() : 0;
}

asio::awaitable<void> HttpServer::accept_loop() {
    asio::steady_timer backoff(executor_);
    bool failing = false;  // accept failed since the last success: warned already
    bool full = false;     // at max_connections since the last connection served: warned
    while (acceptor_ && acceptor_->is_open()) {
        boost::system::error_code ec;
        auto socket = co_await acceptor_->async_accept(asio::redirect_error(use_awaitable, ec));
        if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
        if (ec) {
            if (!failing) {
                spdlog::warn(
                    "status endpoint: cannot accept connections ({}); retrying every "
                    "{} ms open={}",
                    ec.message(), kAcceptBackoff.count(), open_);
            }
            failing = true;
            backoff.expires_after(kAcceptBackoff);
            co_await backoff.async_wait(asio::redirect_error(use_awaitable, ec));
            continue;
        }
        if (failing) {
            spdlog::info("status endpoint: accepting connections again");
            failing = false;
        }
        if (open_ >= listen_.max_connections) {
            // Its descriptor goes back at once: a flood of connections cannot take the ones
            // the database connections need.
            if (!full) {
                spdlog::warn(
                    "status endpoint: {} connections open, closing new ones until one "
                    "ends max_connections={}",
                    open_, listen_.max_connections);
            }
            full = true;
            socket.close(ec);
            continue;
        }
        full = false;
        asio::co_spawn(executor_, serve(std::move(socket)), asio::detached);
    }
}

asio::awaitable<void> HttpServer::serve(tcp::socket socket) {
    ++open_;
    struct Release {
        std::size_t& open;
        ~Release() { --open; }
    } release{open_};
    boost::system::error_code ec;
    if (!tls_) {
        beast::tcp_stream stream(std::move(socket));
        co_await exchange(stream);
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
        co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *tls_);
    beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
    co_await stream.async_handshake(asio::ssl::stream_base::server,
                                    asio::redirect_error(use_awaitable, ec));
    // Plaintext HTTP or a client that does not trust us: nothing is said in the clear.
    if (ec) co_return;
    co_await exchange(stream);
    beast::get_lowest_layer(stream).expires_after(kShutdownTimeout);
    co_await stream.async_shutdown(asio::redirect_error(use_awaitable, ec));
}

template <class Stream>
asio::awaitable<void> HttpServer::exchange(Stream& stream) {
    beast::flat_buffer buffer(kMaxRequestBytes);
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxRequestBytes);
    parser.body_limit(kMaxRequestBytes);
    beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
    boost::system::error_code ec;
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));

    http::response<http::string_body> res;
    if (ec) {
        if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
            ec == asio::ssl::error::stream_truncated) {
            co_return;
        }
        // Malformed or oversized: say so and close.
        const bool too_big = ec == http::error::header_limit || ec == http::error::body_limit ||
                             ec == http::error::buffer_overflow;
        res.result(too_big ? http::status::payload_too_large : http::status::bad_request);
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        res.body() = too_big ? "request too large\n" : "bad request\n";
    } else {
        const auto& req = parser.get();
        Request request;
        request.method = std::string(req.method_string());
        request.target = std::string(req.target());
        if (auto it = req.find(http::field::authorization); it != req.end()) {
            request.authorization = std::string(it->value());
        }
        Response r = route(request, snapshot_(), options_);
        res.result(static_cast<unsigned>(r.status));
        res.set(http::field::content_type, r.content_type);
        for (const auto& [name, value] : r.headers) res.set(name, value);
        res.body() = std::move(r.body);
    }
    res.set(http::field::server, "authsync");
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(false);
    res.prepare_payload();
    if (!ec && parser.get().method() == http::verb::head) {
        const auto length = res.body().size();
        res.body().clear();
        res.content_length(length);
    }
    beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
    co_await http::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
}

}  // namespace authsync::status
