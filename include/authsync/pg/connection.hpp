// A thin RAII layer over libpq: connections, results and PgError with SQLSTATE.
//
// Blocking calls here serve set-up, preflight checks, tools and tests; the streaming and apply
// paths drive the same PGconn non-blocking from the event loop. DSNs are redacted before they
// reach any message, and the connection's password is scrubbed from libpq's and the server's
// messages.
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

// what() is what logs, `/status` and the page show. For an error the server reported, it is
// the server's primary message only when that cannot quote row values; for the classes whose
// messages may (see `withholds_server_message`), it is a summary built from the SQLSTATE, its
// condition name and the diagnostic fields that name things, never values: the table, column,
// data type and constraint. The server's own message is kept for authsync.dead_letter, which
// lives in the target beside the data.
class PgError : public Error {
public:
    PgError(std::string message, std::string sqlstate = {}, std::string detail = {},
            std::string hint = {}, std::string server_message = {});
    // libpq reports the connection lost (CONNECTION_BAD): the server sent no SQLSTATE, and
    // none is made up. The one error without a SQLSTATE that is worth a reconnect.
    static PgError connection_loss(std::string message, std::string server_message = {});

    const std::string& sqlstate() const { return sqlstate_; }
    // The server's primary message (after the context), which may quote row values: only for
    // authsync.dead_letter.error. what() when authsync made the error.
    std::string server_message() const {
        return server_message_.empty() ? std::string(what()) : server_message_;
    }
    const std::string& detail() const { return detail_; }
    const std::string& hint() const { return hint_; }

    // Made by connection_loss.
    bool is_connection_loss() const { return connection_loss_; }
    // 55006 object in use: e.g. a replication slot that another process holds.
    bool is_object_in_use() const;

private:
    std::string sqlstate_;
    std::string detail_;
    std::string hint_;
    std::string server_message_;
    bool connection_loss_ = false;
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

// Whether the server's primary message for an error of this SQLSTATE may quote row values:
// class 22 (data exception: `invalid input syntax for type bigint: "..."`), P0 (PL/pgSQL:
// RAISE and ASSERT say whatever the function says), XX (internal errors, from C functions
// too), and 38, 39 and 2F (errors of functions the target calls). Other classes name objects,
// not values (class 23 puts the row in DETAIL, which authsync never shows). Messages that
// PL/pgSQL's RAISE made are withheld whatever their SQLSTATE (throw_result_error).
bool withholds_server_message(std::string_view sqlstate);

// The SQLSTATE's condition name (`invalid_text_representation` for 22P02), or its class's
// (`data_exception` for an unknown 22xxx), for the withheld classes and class 23; empty for
// others.
std::string condition_name(std::string_view sqlstate);

// Sends the server's NOTICEs on this connection to the log at debug level instead of stderr.
void route_notices(pg_conn* conn);

// libpq's multi-line messages as one log line: newlines and tabs become single spaces,
// trailing whitespace goes.
std::string one_line(std::string_view message);

// What authsync shows of a DSN: libpq parses it (PQconninfoParse) and the display is rebuilt
// from the parsed options, `host=h port=5432 dbname=d user=u password=***`, in either DSN form.
// Password-like options (libpq's dispchar `*`: password, sslpassword) show as `***`, and so does
// the password wherever another option repeats it. A DSN libpq cannot parse shows as
// `<invalid connection string>`: libpq's parse errors quote the input (`missing "=" after
// "horse"`), and the input may be a password with spaces. So does a URI whose host holds an
// `@`, which is a password's unencoded `@` (`postgresql://u:p@ss@h` parses as host `ss@h`).
// A string that is neither key=value nor a URI is a database name, as libpq takes it.
std::string redact_dsn(std::string_view dsn);

// Throws ConfigError("<setting>: invalid connection string ...") with a hint when redact_dsn
// would show nothing of the DSN. The message names no part of the DSN.
void validate_dsn(std::string_view dsn, std::string_view setting);

// Which database the DSN names, as `host=H port=P dbname=D` from its parsed options (a missing
// option is empty; dbname defaults to the user, as libpq's does); nullopt when it cannot be
// parsed. Two DSNs of one config that give the same text point at the same database. Holds no
// password.
std::optional<std::string> dsn_database(std::string_view dsn);

// The DSN's password (`password=`, a URI's user info or `?password=`) as libpq parses it.
std::optional<std::string> dsn_password(std::string_view dsn);

// `text` with every occurrence of `password` replaced by `***`; each of the password's bytes
// may appear as itself or percent-encoded (`%40`, `%7e` or `%7E`). An empty password changes
// nothing.
std::string scrub_password(std::string_view text, std::string_view password);

// A libpq message safe to surface: the connection's password (PQpass, which also knows one
// from a passfile) and `dsn_password` scrubbed out, then made one line.
std::string connection_message(pg_conn* conn, std::string_view message,
                               std::string_view dsn_password = {});

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
    // Connects (blocking). Throws PgError whose message carries libpq's reason and the redacted
    // DSN, the password scrubbed from both; ConfigError when the DSN does not parse. As libpq
    // does with `dbname`, a DSN that is neither key=value nor a URI names the database.
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

// Throws PgError built from a failed result (SQLSTATE, message, detail, hint): what() is the
// primary message, or a summary when withholds_server_message (see PgError).
[[noreturn]] void throw_result_error(pg_conn* conn, pg_result* res, std::string_view context);
// Checks a result's status is one of the OK statuses; otherwise throws (and frees nothing:
// the caller's Result owns it).
void check_result(pg_conn* conn, pg_result* res, std::string_view context);

}  // namespace authsync::pg
