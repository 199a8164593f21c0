// A thin RAII layer over libpq: connections, results and PgError with SQLSTATE.
//
// Blocking calls here serve set-up, preflight checks, tools and tests; the streaming and apply
// paths drive the same PGconn non-blocking from the event loop. DSNs are redacted before they
// reach any message.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "authsync/core/error.hpp"
#include "authsync/core/sql.hpp"

struct pg_conn;
struct pg_result;

namespace authsync::pg {

class PgError : public Error {
public:
    PgError(std::string message, std::string sqlstate = {}, std::string detail = {},
            std::string hint = {});

    const std::string& sqlstate() const { return sqlstate_; }
    const std::string& detail() const { return detail_; }
    const std::string& hint() const { return hint_; }

    // Class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot
    // connect now), or no SQLSTATE at all (libpq lost the connection).
    bool is_connection_failure() const;
    // 40001 serialization failure, 40P01 deadlock detected.
    bool is_serialization_failure() const;
    // 55006 object in use: e.g. a replication slot that another process holds.
    bool is_object_in_use() const;
    // Class 23 (integrity constraint violation).
    bool is_constraint_violation() const;

private:
    std::string sqlstate_;
    std::string detail_;
    std::string hint_;
};

// Every connection authsync opens runs with client_encoding UTF8 and
// standard_conforming_strings on, whatever the environment, role or database say: text
// arrives as UTF-8 (converted by the server from the provider's encoding, e.g. LATIN1), and
// string literals mean what authsync wrote. A SQL_ASCII server cannot convert and would refuse
// to send a byte that is not UTF-8: there the session uses SQL_ASCII, the bytes arrive as
// stored, and one that is not UTF-8 makes its change a row error in the target.
inline constexpr const char* kClientEncoding = "UTF8";
// The client_encoding for this connection's server (UTF8, or SQL_ASCII for such a server).
const char* session_encoding(pg_conn* conn);
// Whether the server reported both settings as pinned for this connection.
bool session_settings_pinned(pg_conn* conn);
// The SET statements that pin them.
std::string pin_session_settings_sql(pg_conn* conn);

// Sends the server's NOTICEs on this connection to the log at debug level instead of stderr.
void route_notices(pg_conn* conn);

// libpq's multi-line messages as one log line: newlines and tabs become single spaces,
// trailing whitespace goes.
std::string one_line(std::string_view message);

// `password=secret` -> `password=***`, and `postgresql://u:secret@h` -> `postgresql://u:***@h`.
std::string redact_dsn(std::string_view dsn);

class Result {
public:
    Result() = default;
    explicit Result(pg_result* res);

    int rows() const;
    int columns() const;
    bool is_null(int row, int column) const;
    std::string_view get(int row, int column) const;
    std::optional<std::string> get_optional(int row, int column) const;
    int column_index(const char* name) const;
    // Rows an INSERT/UPDATE/DELETE affected (PQcmdTuples), 0 when not applicable.
    std::uint64_t affected_rows() const;
    pg_result* raw() const { return res_.get(); }
    explicit operator bool() const { return res_ != nullptr; }

private:
    struct Deleter {
        void operator()(pg_result* r) const;
    };
    std::unique_ptr<pg_result, Deleter> res_;
};

using Params = std::vector<std::optional<std::string>>;

// Params from values. (Named construction instead of a braced list: GCC 12 miscompiles
// initializer lists inside coroutines.)
template <typename... T>
Params params(T&&... values) {
    Params p;
    p.reserve(sizeof...(T));
    (p.emplace_back(std::forward<T>(values)), ...);
    return p;
}

class Connection {
public:
    // Connects (blocking). Throws PgError whose message carries libpq's reason and the redacted DSN.
    static Connection connect(const std::string& dsn);

    Connection() = default;
    explicit Connection(pg_conn* conn) : conn_(conn) {}

    // Runs one or more statements; throws PgError on failure. Returns the last result.
    Result exec(const std::string& sql);
    Result exec_params(const std::string& sql, const Params& params);

    pg_conn* raw() const { return conn_.get(); }
    explicit operator bool() const { return conn_ != nullptr; }
    int socket() const;
    int server_version() const;
    void close() { conn_.reset(); }

private:
    struct Deleter {
        void operator()(pg_conn* c) const;
    };
    std::unique_ptr<pg_conn, Deleter> conn_;
};

// Throws PgError built from a failed result (SQLSTATE, message, detail, hint).
[[noreturn]] void throw_result_error(pg_conn* conn, pg_result* res, std::string_view context);
// Checks a result's status is one of the OK statuses; otherwise throws (and frees nothing:
// the caller's Result owns it).
void check_result(pg_conn* conn, pg_result* res, std::string_view context);

}  // namespace authsync::pg
