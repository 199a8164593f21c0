#include "authsync/pg/connection.hpp"

#include <libpq-fe.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include <spdlog/spdlog.h>

namespace authsync::pg {

PgError::PgError(std::string message, std::string sqlstate, std::string detail, std::string hint)
    : Error(std::move(message)),
      sqlstate_(std::move(sqlstate)),
      detail_(std::move(detail)),
      hint_(std::move(hint)) {}

bool PgError::is_connection_failure() const {
    return sqlstate_.empty() || sqlstate_.rfind("08", 0) == 0 || sqlstate_ == "57P01" ||
           sqlstate_ == "57P02" || sqlstate_ == "57P03";
}

bool PgError::is_serialization_failure() const {
    return sqlstate_ == "40001" || sqlstate_ == "40P01";
}

bool PgError::is_object_in_use() const { return sqlstate_ == "55006"; }

bool PgError::is_constraint_violation() const { return sqlstate_.rfind("23", 0) == 0; }

void route_notices(pg_conn* conn) {
    PQsetNoticeProcessor(
        conn,
        [](void*, const char* message) {
            spdlog::debug("server notice: {}", one_line(message));
        },
        nullptr);
}

std::string one_line(std::string_view message) {
    std::string out;
    out.reserve(message.size());
    bool space = false;
    for (char c : message) {
        if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
            space = true;
            continue;
        }
        if (space && !out.empty()) out += ' ';
        space = false;
        out += c;
    }
    return out;
}

namespace {

struct DsnOption {
    std::string keyword;
    std::string value;
    bool secret = false;  // libpq's dispchar "*": password, sslpassword
};

bool is_uri(std::string_view dsn) {
    return dsn.starts_with("postgresql://") || dsn.starts_with("postgres://");
}

// The DSN's options as libpq reads the `dbname` of PQconnectdbParams with expand_dbname, or
// nullopt when libpq rejects it or its host shows a password's unencoded `@`.
std::optional<std::vector<DsnOption>> parse_dsn(std::string_view dsn) {
    std::vector<DsnOption> out;
    if (!is_uri(dsn) && dsn.find('=') == std::string_view::npos) {
        if (!dsn.empty()) out.push_back({"dbname", std::string(dsn), false});
        return out;
    }
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(std::string(dsn).c_str(), &error);
    // libpq's parse error quotes the input: it is dropped unread.
    if (error) PQfreemem(error);
    if (options == nullptr) return std::nullopt;
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        if (o->val == nullptr) continue;
        out.push_back({o->keyword, o->val, o->dispchar != nullptr && o->dispchar[0] == '*'});
    }
    PQconninfoFree(options);
    if (is_uri(dsn)) {
        for (const auto& o : out) {
            if (o.keyword == "host" && o.value.find('@') != std::string::npos) return std::nullopt;
        }
    }
    return out;
}

std::string quote_dsn_value(std::string_view value) {
    bool plain = !value.empty();
    for (char c : value) {
        if (c == '\\' || c == '\'' || std::isspace(static_cast<unsigned char>(c))) plain = false;
    }
    if (plain) return std::string(value);
    std::string out = "'";
    for (char c : value) {
        if (c == '\\' || c == '\'') out += '\\';
        out += c;
    }
    return out + "'";
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Length of the longest match of `password` at the start of `text`, each byte as itself or as
// %XX; 0 when it does not match. (Both ways are tried for a byte, so a `%` matches as `%` or,
// longer, as `%25`.)
std::size_t match_password(std::string_view text, std::string_view password) {
    if (password.empty()) return 0;
    const char c = password.front();
    std::size_t best = 0;
    if (!text.empty() && text.front() == c) {
        if (password.size() == 1) {
            best = 1;
        } else if (auto n = match_password(text.substr(1), password.substr(1))) {
            best = 1 + n;
        }
    }
    if (text.size() >= 3 && text[0] == '%') {
        int hi = hex_digit(text[1]);
        int lo = hex_digit(text[2]);
        if (hi >= 0 && lo >= 0 && static_cast<unsigned char>(hi * 16 + lo) ==
                                      static_cast<unsigned char>(c)) {
            if (password.size() == 1) {
                best = std::max<std::size_t>(best, 3);
            } else if (auto n = match_password(text.substr(3), password.substr(1))) {
                best = std::max(best, 3 + n);
            }
        }
    }
    return best;
}

}  // namespace

std::string redact_dsn(std::string_view dsn) {
    auto options = parse_dsn(dsn);
    if (!options) return "<invalid connection string>";
    std::vector<std::string> secrets;
    for (const auto& o : *options) {
        if (o.secret && !o.value.empty()) secrets.push_back(o.value);
    }
    // The usual identifying options first, the rest in libpq's order.
    static constexpr std::string_view kFirst[] = {"host", "hostaddr", "port", "dbname", "user"};
    auto rank = [](const DsnOption& o) {
        for (std::size_t i = 0; i < std::size(kFirst); ++i) {
            if (o.keyword == kFirst[i]) return i;
        }
        return std::size(kFirst);
    };
    std::stable_sort(options->begin(), options->end(),
                     [&](const DsnOption& a, const DsnOption& b) { return rank(a) < rank(b); });
    std::string out;
    for (const auto& o : *options) {
        std::string value = o.secret ? "***" : o.value;
        for (const auto& secret : secrets) value = scrub_password(value, secret);
        if (!out.empty()) out += ' ';
        out += o.keyword + "=" + (o.secret ? value : quote_dsn_value(value));
    }
    return out;
}

void validate_dsn(std::string_view dsn, std::string_view setting) {
    if (parse_dsn(dsn)) return;
    throw ConfigError(fmt::format(
        "{}: invalid connection string (libpq's reason is not shown: it may quote the "
        "password); in key=value form put a value with spaces in single quotes "
        "(password='with spaces', a quote or backslash inside escaped with a backslash), and "
        "in a URI percent-encode the password's reserved characters (@ as %40, space as %20, "
        "% as %25)",
        setting));
}

std::optional<std::string> dsn_password(std::string_view dsn) {
    auto options = parse_dsn(dsn);
    if (!options) return std::nullopt;
    for (const auto& o : *options) {
        if (o.keyword == "password") return o.value;
    }
    return std::nullopt;
}

std::string scrub_password(std::string_view text, std::string_view password) {
    if (password.empty()) return std::string(text);
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        if (auto n = match_password(text.substr(i), password)) {
            out += "***";
            i += n;
        } else {
            out += text[i++];
        }
    }
    return out;
}

std::string connection_message(pg_conn* conn, std::string_view message,
                               std::string_view dsn_password) {
    std::string s(message);
    if (conn != nullptr) {
        const char* used = PQpass(conn);
        if (used != nullptr) s = scrub_password(s, used);
    }
    s = scrub_password(s, dsn_password);
    return one_line(s);
}

Result::Result(pg_result* res) : res_(res) {}

void Result::Deleter::operator()(pg_result* r) const { PQclear(r); }

int Result::rows() const { return PQntuples(res_.get()); }
int Result::columns() const { return PQnfields(res_.get()); }
bool Result::is_null(int row, int column) const { return PQgetisnull(res_.get(), row, column); }

std::string_view Result::get(int row, int column) const {
    return {PQgetvalue(res_.get(), row, column),
            static_cast<std::size_t>(PQgetlength(res_.get(), row, column))};
}

std::optional<std::string> Result::get_optional(int row, int column) const {
    if (is_null(row, column)) return std::nullopt;
    return std::string(get(row, column));
}

int Result::column_index(const char* name) const { return PQfnumber(res_.get(), name); }

std::uint64_t Result::affected_rows() const {
    const char* n = res_ ? PQcmdTuples(res_.get()) : "";
    return (n && *n) ? std::stoull(n) : 0;
}

void Connection::Deleter::operator()(pg_conn* c) const { PQfinish(c); }

Connection Connection::connect(const std::string& dsn) {
    validate_dsn(dsn, "dsn");
    const char* keys[] = {"dbname", nullptr};
    const char* values[] = {dsn.c_str(), nullptr};
    Connection c(PQconnectdbParams(keys, values, 1));
    if (!c.conn_) throw PgError("could not allocate a connection");
    if (PQstatus(c.raw()) == CONNECTION_OK) route_notices(c.raw());
    if (PQstatus(c.raw()) != CONNECTION_OK) {
        std::string reason = connection_message(c.raw(), PQerrorMessage(c.raw()),
                                                dsn_password(dsn).value_or(""));
        throw PgError(fmt::format("could not connect to {}: {}", redact_dsn(dsn), reason), "08001");
    }
    return c;
}

void throw_result_error(pg_conn* conn, pg_result* res, std::string_view context) {
    // The server's fields may quote what the client sent, the password included.
    const char* password = conn ? PQpass(conn) : nullptr;
    auto field = [&](int code) -> std::string {
        const char* v = res ? PQresultErrorField(res, code) : nullptr;
        return v ? scrub_password(v, password ? password : "") : "";
    };
    std::string message = field(PG_DIAG_MESSAGE_PRIMARY);
    if (message.empty()) {
        message = res ? PQresultErrorMessage(res) : "";
        if (message.empty() && conn) message = PQerrorMessage(conn);
        message = connection_message(conn, message);
    }
    std::string sqlstate = field(PG_DIAG_SQLSTATE);
    std::string full = context.empty() ? message : fmt::format("{}: {}", context, message);
    if (!sqlstate.empty()) full += fmt::format(" (SQLSTATE {})", sqlstate);
    throw PgError(std::move(full), std::move(sqlstate), field(PG_DIAG_MESSAGE_DETAIL),
                  field(PG_DIAG_MESSAGE_HINT));
}

void check_result(pg_conn* conn, pg_result* res, std::string_view context) {
    if (res == nullptr) throw_result_error(conn, nullptr, context);
    switch (PQresultStatus(res)) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
        case PGRES_SINGLE_TUPLE:
        case PGRES_PIPELINE_SYNC:
            return;
        default:
            throw_result_error(conn, res, context);
    }
}

Result Connection::exec(const std::string& sql) {
    Result r(PQexec(raw(), sql.c_str()));
    check_result(raw(), r.raw(), "");
    return r;
}

Result Connection::exec_params(const std::string& sql, const Params& params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    Result r(PQexecParams(raw(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                          values.data(), nullptr, nullptr, 0));
    check_result(raw(), r.raw(), "");
    return r;
}

int Connection::socket() const { return PQsocket(raw()); }
int Connection::server_version() const { return PQserverVersion(raw()); }

}  // namespace authsync::pg
