#include "authsync/pg/connection.hpp"

#include <libpq-fe.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>

#include <spdlog/spdlog.h>

#include "authsync/core/hex.hpp"

namespace authsync::pg {

PgError::PgError(std::string message, std::string sqlstate, std::string detail, std::string hint,
                 std::string server_message)
    : Error(std::move(message)),
      sqlstate_(std::move(sqlstate)),
      detail_(std::move(detail)),
      hint_(std::move(hint)),
      server_message_(std::move(server_message)) {}

PgError PgError::connection_loss(std::string message, std::string server_message) {
    PgError e(std::move(message), {}, {}, {}, std::move(server_message));
    e.connection_loss_ = true;
    return e;
}

bool PgError::is_object_in_use() const {
    return sqlstate_ == "55006";
}

bool withholds_server_message(std::string_view sqlstate) {
    static constexpr std::string_view kClasses[] = {"22", "P0", "XX", "38", "39", "2F"};
    return std::any_of(std::begin(kClasses), std::end(kClasses),
                       [&](std::string_view c) { return sqlstate.starts_with(c); });
}

std::string condition_name(std::string_view sqlstate) {
    // PostgreSQL's errcodes.txt, for the classes whose messages are withheld and for class 23.
    static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
        {"22000", "data_exception"},
        {"2202E", "array_subscript_error"},
        {"22021", "character_not_in_repertoire"},
        {"22008", "datetime_field_overflow"},
        {"22012", "division_by_zero"},
        {"22005", "error_in_assignment"},
        {"2200B", "escape_character_conflict"},
        {"22022", "indicator_overflow"},
        {"22015", "interval_field_overflow"},
        {"2201E", "invalid_argument_for_logarithm"},
        {"22014", "invalid_argument_for_ntile_function"},
        {"22016", "invalid_argument_for_nth_value_function"},
        {"2201F", "invalid_argument_for_power_function"},
        {"2201G", "invalid_argument_for_width_bucket_function"},
        {"22018", "invalid_character_value_for_cast"},
        {"22007", "invalid_datetime_format"},
        {"22019", "invalid_escape_character"},
        {"2200D", "invalid_escape_octet"},
        {"22025", "invalid_escape_sequence"},
        {"22P06", "nonstandard_use_of_escape_character"},
        {"22010", "invalid_indicator_parameter_value"},
        {"22023", "invalid_parameter_value"},
        {"22013", "invalid_preceding_or_following_size"},
        {"2201B", "invalid_regular_expression"},
        {"2201W", "invalid_row_count_in_limit_clause"},
        {"2201X", "invalid_row_count_in_result_offset_clause"},
        {"2202H", "invalid_tablesample_argument"},
        {"2202G", "invalid_tablesample_repeat"},
        {"22009", "invalid_time_zone_displacement_value"},
        {"2200C", "invalid_use_of_escape_character"},
        {"2200G", "most_specific_type_mismatch"},
        {"22004", "null_value_not_allowed"},
        {"22002", "null_value_no_indicator_parameter"},
        {"22003", "numeric_value_out_of_range"},
        {"2200H", "sequence_generator_limit_exceeded"},
        {"22026", "string_data_length_mismatch"},
        {"22001", "string_data_right_truncation"},
        {"22011", "substring_error"},
        {"22027", "trim_error"},
        {"22024", "unterminated_c_string"},
        {"2200F", "zero_length_character_string"},
        {"22P01", "floating_point_exception"},
        {"22P02", "invalid_text_representation"},
        {"22P03", "invalid_binary_representation"},
        {"22P04", "bad_copy_file_format"},
        {"22P05", "untranslatable_character"},
        {"2200L", "not_an_xml_document"},
        {"2200M", "invalid_xml_document"},
        {"2200N", "invalid_xml_content"},
        {"2200S", "invalid_xml_comment"},
        {"2200T", "invalid_xml_processing_instruction"},
        {"22030", "duplicate_json_object_key_value"},
        {"22031", "invalid_argument_for_sql_json_datetime_function"},
        {"22032", "invalid_json_text"},
        {"22033", "invalid_sql_json_subscript"},
        {"22034", "more_than_one_sql_json_item"},
        {"22035", "no_sql_json_item"},
        {"22036", "non_numeric_sql_json_item"},
        {"22037", "non_unique_keys_in_a_json_object"},
        {"22038", "singleton_sql_json_item_required"},
        {"22039", "sql_json_array_not_found"},
        {"2203A", "sql_json_member_not_found"},
        {"2203B", "sql_json_number_not_found"},
        {"2203C", "sql_json_object_not_found"},
        {"2203D", "too_many_json_array_elements"},
        {"2203E", "too_many_json_object_members"},
        {"2203F", "sql_json_scalar_required"},
        // (RAISE ... USING ERRCODE may use any of them, class 23 included.)
        {"23000", "integrity_constraint_violation"},
        {"23001", "restrict_violation"},
        {"23502", "not_null_violation"},
        {"23503", "foreign_key_violation"},
        {"23505", "unique_violation"},
        {"23514", "check_violation"},
        {"23P01", "exclusion_violation"},
        {"P0000", "plpgsql_error"},
        {"P0001", "raise_exception"},
        {"P0002", "no_data_found"},
        {"P0003", "too_many_rows"},
        {"P0004", "assert_failure"},
        {"XX000", "internal_error"},
        {"XX001", "data_corrupted"},
        {"XX002", "index_corrupted"},
        {"38000", "external_routine_exception"},
        {"38001", "containing_sql_not_permitted"},
        {"38002", "modifying_sql_data_not_permitted"},
        {"38003", "prohibited_sql_statement_attempted"},
        {"38004", "reading_sql_data_not_permitted"},
        {"39000", "external_routine_invocation_exception"},
        {"39001", "invalid_sqlstate_returned"},
        {"39004", "null_value_not_allowed"},
        {"39P01", "trigger_protocol_violated"},
        {"39P02", "srf_protocol_violated"},
        {"39P03", "event_trigger_protocol_violated"},
        {"2F000", "sql_routine_exception"},
        {"2F005", "function_executed_no_return_statement"},
        {"2F002", "modifying_sql_data_not_permitted"},
        {"2F003", "prohibited_sql_statement_attempted"},
        {"2F004", "reading_sql_data_not_permitted"},
    };
    for (const auto& [code, name] : kNames) {
        if (code == sqlstate) return std::string(name);
    }
    if (sqlstate.size() == 5) {
        const auto klass = std::string(sqlstate.substr(0, 2)) + "000";
        for (const auto& [code, name] : kNames) {
            if (code == klass) return std::string(name);
        }
    }
    return {};
}

void route_notices(pg_conn* conn) {
    PQsetNoticeProcessor(
        conn,
        [](void*, const char* message) { spdlog::debug("server notice: {}", one_line(message)); },
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
        int hi = hex_value(text[1]);
        int lo = hex_value(text[2]);
        if (hi >= 0 && lo >= 0 &&
            static_cast<unsigned char>(hi * 16 + lo) == static_cast<unsigned char>(c)) {
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

std::optional<std::string> dsn_database(std::string_view dsn) {
    auto options = parse_dsn(dsn);
    if (!options) return std::nullopt;
    std::map<std::string, std::string> values;
    for (const auto& o : *options) values[o.keyword] = o.value;
    std::string host = values["host"].empty() ? values["hostaddr"] : values["host"];
    std::string dbname = values["dbname"].empty() ? values["user"] : values["dbname"];
    // Spellings of one server are one server: libpq's default port, and the loopback names.
    std::string port = values["port"].empty() ? "5432" : values["port"];
    if (host == "localhost" || host == "::1") host = "127.0.0.1";
    return fmt::format("host={} port={} dbname={}", host, port, dbname);
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

void Result::Deleter::operator()(pg_result* r) const {
    PQclear(r);
}

int Result::rows() const {
    return PQntuples(res_.get());
}
int Result::columns() const {
    return PQnfields(res_.get());
}
bool Result::is_null(int row, int column) const {
    return PQgetisnull(res_.get(), row, column);
}

std::string_view Result::get(int row, int column) const {
    return {PQgetvalue(res_.get(), row, column),
            static_cast<std::size_t>(PQgetlength(res_.get(), row, column))};
}

std::optional<std::string> Result::get_optional(int row, int column) const {
    if (is_null(row, column)) return std::nullopt;
    return std::string(get(row, column));
}

int Result::column_index(const char* name) const {
    return PQfnumber(res_.get(), name);
}

std::uint64_t Result::affected_rows() const {
    const char* n = res_ ? PQcmdTuples(res_.get()) : "";
    return (n && *n) ? std::stoull(n) : 0;
}

void Connection::Deleter::operator()(pg_conn* c) const {
    PQfinish(c);
}

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
    validate_dsn(dsn, "dsn");
    const char* keys[] = {"dbname", "client_encoding", nullptr};
    const char* values[] = {dsn.c_str(), kClientEncoding, nullptr};
    Connection c(PQconnectdbParams(keys, values, 1));
    if (!c.conn_) throw PgError("could not allocate a connection");
    if (PQstatus(c.raw()) == CONNECTION_OK) route_notices(c.raw());
    if (PQstatus(c.raw()) != CONNECTION_OK) {
        std::string reason =
            connection_message(c.raw(), PQerrorMessage(c.raw()), dsn_password(dsn).value_or(""));
        throw PgError::connection_loss(
            fmt::format("could not connect to {}: {}", redact_dsn(dsn), reason));
    }
    if (!session_settings_pinned(c.raw())) {
        c.exec(pin_session_settings_sql(c.raw()));
        if (!session_settings_pinned(c.raw())) {
            throw PgError(
                "the server did not take the session's client_encoding and "
                "standard_conforming_strings on");
        }
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
    std::string server = message;
    if (!sqlstate.empty()) server += fmt::format(" (SQLSTATE {})", sqlstate);
    std::string shown = server;
    // A PL/pgSQL RAISE says what its function chose, under any SQLSTATE.
    const bool raised = field(PG_DIAG_SOURCE_FUNCTION) == "exec_stmt_raise";
    if (withholds_server_message(sqlstate) || raised) {
        // Names, never values: which table, column, type or constraint the error is about.
        std::string what = condition_name(sqlstate);
        if (what.empty()) what = "error";
        const auto schema = field(PG_DIAG_SCHEMA_NAME);
        const auto table = field(PG_DIAG_TABLE_NAME);
        if (!table.empty()) {
            what += " table=" + (schema.empty() ? table : schema + "." + table);
        }
        if (auto column = field(PG_DIAG_COLUMN_NAME); !column.empty()) what += " column=" + column;
        if (auto type = field(PG_DIAG_DATATYPE_NAME); !type.empty()) what += " datatype=" + type;
        if (auto constraint = field(PG_DIAG_CONSTRAINT_NAME); !constraint.empty()) {
            what += " constraint=" + constraint;
        }
        shown = fmt::format(
            "{} (SQLSTATE {}; the server's message is withheld: it may quote "
            "row values)",
            what, sqlstate);
        spdlog::debug("server message withheld from the error: {}", one_line(server));
    }
    std::string full = context.empty() ? shown : fmt::format("{}: {}", context, shown);
    // libpq's own errors carry no SQLSTATE: a lost connection (PQstatus(NULL) is bad too) is
    // marked as such; any other (a call out of turn, no memory) is not worth a reconnect.
    if (sqlstate.empty() && PQstatus(conn) == CONNECTION_BAD) {
        throw PgError::connection_loss(std::move(full), std::move(server));
    }
    throw PgError(std::move(full), std::move(sqlstate), field(PG_DIAG_MESSAGE_DETAIL),
                  field(PG_DIAG_MESSAGE_HINT), std::move(server));
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
        case PGRES_PIPELINE_SYNC: return;
        default: throw_result_error(conn, res, context);
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

int Connection::socket() const {
    return PQsocket(raw());
}
int Connection::server_version() const {
    return PQserverVersion(raw());
}

}  // namespace authsync::pg
