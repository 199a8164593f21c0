#include "authsync/pg/connection.hpp"

#include <libpq-fe.h>

#include <fmt/format.h>

#include <regex>

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

std::string redact_dsn(std::string_view dsn) {
    std::string s(dsn);
    static const std::regex kv(R"((password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+))",
                               std::regex::icase);
    s = std::regex_replace(s, kv, "$1***");
    static const std::regex uri(R"(((?:postgres|postgresql)://[^:/@\s]*:)[^@\s]*@)",
                                std::regex::icase);
    s = std::regex_replace(s, uri, "$1***@");
    static const std::regex param(R"(([?&]password=)[^&\s]*)", std::regex::icase);
    s = std::regex_replace(s, param, "$1***");
    return s;
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

const char* session_encoding(pg_conn* conn) {
    const char* server = PQparameterStatus(conn, "server_encoding");
    if (server && std::string_view(server) == "SQL_ASCII") return "SQL_ASCII";
    return kClientEncoding;
}

bool session_settings_pinned(pg_conn* conn) {
    const char* encoding = PQparameterStatus(conn, "client_encoding");
    const char* strings = PQparameterStatus(conn, "standard_conforming_strings");
    return encoding && std::string_view(encoding) == session_encoding(conn) && strings &&
           std::string_view(strings) == "on";
}

std::string pin_session_settings_sql(pg_conn* conn) {
    return fmt::format("SET client_encoding = '{}'; SET standard_conforming_strings = on",
                       session_encoding(conn));
}

Connection Connection::connect(const std::string& dsn) {
    const char* keys[] = {"dbname", "client_encoding", nullptr};
    const char* values[] = {dsn.c_str(), kClientEncoding, nullptr};
    Connection c(PQconnectdbParams(keys, values, 1));
    if (!c.conn_) throw PgError("could not allocate a connection");
    if (PQstatus(c.raw()) == CONNECTION_OK) route_notices(c.raw());
    if (PQstatus(c.raw()) != CONNECTION_OK) {
        std::string reason = one_line(PQerrorMessage(c.raw()));
        throw PgError(fmt::format("could not connect to {}: {}", redact_dsn(dsn), reason), "08001");
    }
    if (!session_settings_pinned(c.raw())) {
        c.exec(pin_session_settings_sql(c.raw()));
        if (!session_settings_pinned(c.raw())) {
            throw PgError("the server did not take the session's client_encoding and "
                          "standard_conforming_strings on");
        }
    }
    return c;
}

void throw_result_error(pg_conn* conn, pg_result* res, std::string_view context) {
    auto field = [&](int code) -> std::string {
        const char* v = res ? PQresultErrorField(res, code) : nullptr;
        return v ? v : "";
    };
    std::string message = field(PG_DIAG_MESSAGE_PRIMARY);
    if (message.empty()) {
        message = res ? PQresultErrorMessage(res) : "";
        if (message.empty() && conn) message = PQerrorMessage(conn);
        message = one_line(message);
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
