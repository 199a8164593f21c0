// HttpServer: the status endpoint's sockets (Boost.Beast), on the engine's event loop.
//
// Accepts on `status.listen` (127.0.0.1:8080 by default), over TLS when `status.tls` names a
// certificate and key; reads one request per connection with a 5 s timeout and an 8 KiB limit
// on head and body, asks `route()` (router.hpp) for the answer with a snapshot taken at that
// moment, writes it, closes. Runs on the engine's loop, so it reads engine state without
// locks, and its answering proves the loop is responsive.
//
// It shares the process's file descriptors with the database connections, so it holds at most
// `max_connections` at once (a connection over the cap is closed as soon as it is accepted),
// and when accept fails (out of descriptors) it waits 100 ms before trying again instead of
// spinning, with one warning per run of failures.
#pragma once

#include <utility>  // before Asio (Boost 1.74)

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "authsync/status/router.hpp"

namespace boost::asio::ssl {
class context;
}

namespace authsync::status {

namespace asio = boost::asio;

struct ListenOptions {
    std::string listen;                // host:port
    std::size_t max_connections = 64;  // open at once; more are closed at once
    std::string certificate_file;      // PEM chain; with key_file: TLS only
    std::string key_file;              // PEM private key
};

class HttpServer {
public:
    using SnapshotFn = std::function<Snapshot()>;

    HttpServer(asio::any_io_executor executor, ListenOptions listen, RouteOptions options,
               SnapshotFn snapshot);
    ~HttpServer();

    // Loads the certificate, binds and starts accepting. Throws ConfigError when the address
    // cannot be bound or the certificate or key cannot be loaded.
    void start();
    void stop();
    std::uint16_t port() const;

private:
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> serve(asio::ip::tcp::socket socket);
    template <class Stream>
    asio::awaitable<void> exchange(Stream& stream);

    asio::any_io_executor executor_;
    ListenOptions listen_;
    RouteOptions options_;
    SnapshotFn snapshot_;
    std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
    std::unique_ptr<asio::ssl::context> tls_;
    std::size_t open_ = 0;  // connections being served
};

}  // namespace authsync::status
