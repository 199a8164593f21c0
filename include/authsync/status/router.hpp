// The status endpoint's pure core: what each path answers, given a snapshot of the engine.
//
// route(request, snapshot, options) -> response is a plain function: no sockets, no Beast, no
// clock (the snapshot carries `now`), so every endpoint is tested without a server. The HTTP
// server (src/status/http_server.cpp) only moves bytes and builds the snapshot on the event
// loop. No row data is ever served: the snapshot holds positions, times, counters and errors.
//
//   GET /          small self-contained HTML page: state, lag, a chart of lag over 15 minutes
//   GET /status    JSON (the fields are declared in fields.hpp)
//   GET /metrics   Prometheus text exposition, prefix authsync_, base units
//   GET /healthz   200 "ok" while the process and its event loop answer (never needs a token)
//   GET /readyz    200 when streaming and lag_seconds <= max_ready_lag_seconds, else 503
// With a token configured, every path but /healthz needs `Authorization: Bearer <token>`
// (401 otherwise). Other methods: 405; unknown paths: 404.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "authsync/status/snapshot.hpp"

namespace authsync::status {

struct Request {
    std::string method;                        // "GET", ...
    std::string target;                        // path with optional query string
    std::optional<std::string> authorization;  // the Authorization header, if sent
};

struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::map<std::string, std::string> headers;  // extra headers (e.g. WWW-Authenticate)
};

struct RouteOptions {
    std::optional<std::string> token;  // bearer token; none: open
    double max_ready_lag_seconds = 60;
};

Response route(const Request& request, const Snapshot& snapshot, const RouteOptions& options);

// The renderers route() uses (over fields(), see fields.hpp), exposed for tests; the document's
// `ready` is judged with default options.
std::string render_status_json(const Snapshot& snapshot);
std::string render_metrics(const Snapshot& snapshot);
std::string render_page(const Snapshot& snapshot);
bool is_ready(const Snapshot& snapshot, const RouteOptions& options);

}  // namespace authsync::status
