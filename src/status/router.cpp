#include "authsync/status/router.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string_view>

#include "authsync/status/fields.hpp"

#include "authsync/core/ascii.hpp"
#include "authsync/core/utf8.hpp"

namespace authsync::status {

namespace {

constexpr std::string_view kPlainText = "text/plain; charset=utf-8";

std::string not_ready_reason(const Snapshot& s, const RouteOptions& options) {
    if (s.state != "streaming") {
        return fmt::format("not streaming: {}", s.state.empty() ? "unknown" : s.state);
    }
    if (std::isnan(s.lag_seconds)) return "lag unknown";
    return fmt::format("lag {:.1f} s exceeds {} s", s.lag_seconds, options.max_ready_lag_seconds);
}

std::string_view path_of(std::string_view target) {
    return target.substr(0, target.find('?'));
}

// The time taken depends on the length of what the client sent, never on where it differs from
// the token nor on the token's length. An empty token matches nothing: fail closed.
bool constant_time_equal(std::string_view supplied, std::string_view token) {
    if (token.empty()) return false;
    unsigned diff = supplied.size() == token.size() ? 0U : 1U;
    for (std::size_t i = 0; i < supplied.size(); ++i) {
        diff |= static_cast<unsigned char>(supplied[i]) ^
                static_cast<unsigned char>(token[i % token.size()]);
    }
    return diff == 0;
}

// `Authorization: Bearer <token>` (RFC 6750; the scheme is case-insensitive, RFC 7235).
bool authorized(const Request& request, const RouteOptions& options) {
    if (!options.token) return true;
    if (!request.authorization) return false;
    constexpr std::string_view kScheme = "bearer";
    constexpr std::string_view kWhitespace = " \t";  // HTTP's optional whitespace
    const std::string_view header = trim(*request.authorization, kWhitespace);
    if (header.size() <= kScheme.size() ||
        !iequals_ascii(header.substr(0, kScheme.size()), kScheme))
        return false;
    const char separator = header[kScheme.size()];
    if (separator != ' ' && separator != '\t') return false;
    const std::string_view credentials = trim(header.substr(kScheme.size() + 1), kWhitespace);
    return !credentials.empty() && constant_time_equal(credentials, *options.token);
}

Response make(int status, std::string_view content_type, std::string body) {
    Response r;
    r.status = status;
    r.content_type = std::string(content_type);
    r.body = std::move(body);
    return r;
}

Response page_response(const Snapshot& s) {
    Response r = make(200, "text/html; charset=utf-8", render_page(s));
    // The page is self-contained; the policy makes that a property the browser enforces.
    r.headers.emplace("Content-Security-Policy",
                      "default-src 'none'; style-src 'unsafe-inline'; "
                      "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; "
                      "form-action 'none'; frame-ancestors 'none'");
    r.headers.emplace("X-Content-Type-Options", "nosniff");
    return r;
}

}  // namespace

bool is_ready(const Snapshot& snapshot, const RouteOptions& options) {
    return snapshot.state == "streaming" && snapshot.lag_seconds <= options.max_ready_lag_seconds;
}

Response route(const Request& request, const Snapshot& snapshot, const RouteOptions& options) {
    const bool head = request.method == "HEAD";
    Response r;
    if (request.method != "GET" && !head) {
        r = make(405, kPlainText, "method not allowed\n");
        r.headers.emplace("Allow", "GET, HEAD");
        return r;
    }
    const std::string_view path = path_of(request.target);
    if (path == "/healthz") {
        r = make(200, kPlainText, "ok\n");
    } else if (!authorized(request, options)) {
        r = make(401, kPlainText, "unauthorized\n");
        r.headers.emplace("WWW-Authenticate", "Bearer realm=\"authsync\"");
    } else if (path == "/status") {
        r = make(200, "application/json",
                 render_status_json(Report{snapshot, is_ready(snapshot, options)}, fields()));
    } else if (path == "/metrics") {
        r = make(200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(snapshot));
    } else if (path == "/readyz") {
        r = is_ready(snapshot, options)
                ? make(200, kPlainText, "ready\n")
                : make(503, kPlainText, not_ready_reason(snapshot, options) + "\n");
    } else if (path == "/" || path == "/index.html") {
        r = page_response(snapshot);
    } else {
        r = make(404, kPlainText, "not found\n");
    }
    // Every answer describes this instant; no proxy or browser should serve it later.
    r.headers.emplace("Cache-Control", "no-store");
    if (head) r.body.clear();
    return r;
}

}  // namespace authsync::status
