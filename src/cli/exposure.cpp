#include "authsync/cli/exposure.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <libpq-fe.h>

#include <cstring>
#include <memory>
#include <optional>

#include "authsync/core/host_port.hpp"

namespace authsync::cli {

namespace {

// libpq's keyword=value or URI DSN, one keyword: the DSN's value, else the environment
// variable libpq reads for it; nullopt when neither is set (or the DSN does not parse: the
// connection says why).
struct Dsn {
    std::optional<std::string> host, hostaddr, sslmode;
};

std::optional<Dsn> parse_dsn(const std::string& dsn, const config::EnvLookup& env) {
    char* error = nullptr;
    std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> options(
        PQconninfoParse(dsn.c_str(), &error), &PQconninfoFree);
    if (error) PQfreemem(error);
    if (!options) return std::nullopt;
    Dsn d;
    for (auto* o = options.get(); o->keyword; ++o) {
        if (!o->val || !*o->val) continue;
        if (std::strcmp(o->keyword, "host") == 0) d.host = o->val;
        if (std::strcmp(o->keyword, "hostaddr") == 0) d.hostaddr = o->val;
        if (std::strcmp(o->keyword, "sslmode") == 0) d.sslmode = o->val;
    }
    if (!d.host) d.host = env("PGHOST");
    if (!d.hostaddr) d.hostaddr = env("PGHOSTADDR");
    if (!d.sslmode) d.sslmode = env("PGSSLMODE");
    return d;
}

// The first non-local entry of a comma-separated host list, or "".
std::string first_remote(const std::optional<std::string>& list) {
    if (!list) return "";
    std::string_view rest = *list;
    while (true) {
        const auto comma = rest.find(',');
        const auto item = rest.substr(0, comma);
        if (!is_local_host(item)) return std::string(item);
        if (comma == std::string_view::npos) return "";
        rest.remove_prefix(comma + 1);
    }
}

void check_dsn(const std::string& side, const std::string& dsn, const config::EnvLookup& env,
               std::vector<std::string>& out) {
    const auto d = parse_dsn(dsn, env);
    if (!d) return;
    // With hostaddr, libpq connects there and checks the certificate against host.
    auto remote = first_remote(d->host);
    if (remote.empty()) remote = first_remote(d->hostaddr);
    if (remote.empty()) return;
    const std::string mode = d->sslmode.value_or("prefer");
    if (mode == "verify-full") return;
    out.push_back(fmt::format(
        "{}.dsn: host {} is not local and sslmode={} does not verify the server's certificate "
        "and name: a man in the middle can read users' data (use sslmode=verify-full with "
        "sslrootcert, docs/SECURITY.md)",
        side, remote, mode));
}

}  // namespace

bool is_local_host(std::string_view host) {
    if (host.empty() || host.front() == '/' || host.front() == '@') return true;
    if (host == "localhost") return true;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const std::string h(host);
    in_addr v4{};
    if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
        return std::memcmp(&v6, &in6addr_loopback, sizeof v6) == 0;
    }
    return false;
}

std::vector<std::string> exposure_warnings(const config::Config& config,
                                           const config::EnvLookup& env) {
    std::vector<std::string> out;
    const auto& listen = config.status.listen;
    if (!listen.empty()) {
        if (!is_local_host(split_host_port(listen).host)) {
            if (!config.status.token) {
                out.push_back(fmt::format(
                    "status.listen {} is reachable from other hosts and has no status.token: "
                    "whoever reaches it reads /status and /metrics",
                    listen));
            }
            if (!config.status.tls) {
                out.push_back(fmt::format(
                    "status.listen {} is reachable from other hosts and has no status.tls: the "
                    "bearer token and the status cross the network in clear text",
                    listen));
            }
        }
    }
    check_dsn("source", config.source.dsn, env, out);
    for (std::size_t i = 0; i < config.targets.size(); ++i) {
        const auto& t = config.targets[i];
        const bool one = config.targets.size() == 1 && t.name == config::kDefaultTargetName;
        check_dsn(one ? std::string("target") : fmt::format("targets[{}]", i), t.target.dsn, env,
                  out);
    }
    return out;
}

}  // namespace authsync::cli
