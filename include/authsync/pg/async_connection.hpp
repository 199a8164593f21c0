// AsyncConnection: one libpq connection driven non-blocking from an Asio event loop.
//
// The loop waits on the connection's socket; libpq does the protocol. Used for the target
// (queries in a transaction) and for the source's replication stream (COPY BOTH). Every call
// must come from the loop's thread; a connection serves one operation at a time, except that
// put_copy_data may be called while a read_copy_data is waiting (the status update timer).
#pragma once

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange

#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "authsync/pg/connection.hpp"

namespace authsync::pg {

namespace asio = boost::asio;

// A buffer returned by PQgetCopyData, freed with PQfreemem.
class CopyBuffer {
public:
    CopyBuffer() = default;
    CopyBuffer(char* data, int size) : data_(data), size_(static_cast<std::size_t>(size)) {}
    std::span<const std::byte> bytes() const {
        return {reinterpret_cast<const std::byte*>(data_.get()), size_};
    }

private:
    struct Deleter {
        void operator()(char* p) const;
    };
    std::unique_ptr<char, Deleter> data_;
    std::size_t size_ = 0;
};

// One query of a pipeline, and what became of it.
struct PipelineQuery {
    std::string sql;  // one statement
    Params params;
    // Run as a prepared statement, prepared (in the same pipeline) the first time this
    // connection sees the text: parsed and planned once, not on every batch.
    bool prepared = false;
    // The parameters are in binary format (e.g. apply::binary_array), not text.
    bool binary = false;
};
struct PipelineOutcome {
    Result result;                 // when it ran
    std::optional<PgError> error;  // when it failed
    bool skipped = false;          // the server skipped it after an earlier failure
};

class AsyncConnection {
public:
    explicit AsyncConnection(asio::any_io_executor executor) : executor_(std::move(executor)) {}
    ~AsyncConnection();
    AsyncConnection(const AsyncConnection&) = delete;
    AsyncConnection& operator=(const AsyncConnection&) = delete;

    // Connects without blocking the loop. `application_name` and, for a replication
    // connection, replication=database and session settings that make output functions
    // predictable (ISO dates, UTC, full float precision) take precedence over the DSN.
    // Throws PgError (the DSN redacted, its password scrubbed from libpq's reason), or
    // ConfigError when libpq cannot parse the DSN.
    asio::awaitable<void> connect(std::string dsn, std::string application_name,
                                  bool replication = false);

    // Runs a simple query (may hold several statements); returns the last result.
    asio::awaitable<Result> query(std::string sql);
    asio::awaitable<Result> query_params(std::string sql, Params params);
    // Runs `queries` in one round trip with libpq's pipeline mode: all are sent, then one sync
    // point; outcomes come back in order. After the first failure the server skips the rest
    // (skipped), and an explicit transaction is left aborted. The connection must be idle.
    asio::awaitable<std::vector<PipelineOutcome>> pipeline(
        const std::vector<PipelineQuery>& queries);
    // pipeline() in two halves, so that the caller can work while the server executes:
    // pipeline_send returns once the queries are on the wire, and pipeline_results reads the
    // outcomes of the oldest pipeline sent. More pipelines may be sent before the results of
    // the first are read (each ends with its own sync point; the server runs them in order,
    // and a failure skips only the rest of its own); no other query may go until every
    // pipeline's results are read.
    asio::awaitable<void> pipeline_send(const std::vector<PipelineQuery>& queries);
    asio::awaitable<std::vector<PipelineOutcome>> pipeline_results();
    // Pipelines sent whose results are not read yet.
    std::size_t pipelines_unread() const { return pipelines_.size(); }

    // Sends a command that enters COPY BOTH (START_REPLICATION) and waits until it has.
    asio::awaitable<void> start_copy_both(const std::string& command);
    // COPY ... TO STDOUT: then read_copy_data() until it returns nullopt.
    asio::awaitable<void> start_copy_out(const std::string& command);
    // COPY ... FROM STDIN: then write_copy_data() and end_copy().
    asio::awaitable<void> start_copy_in(const std::string& command);
    // Sends rows, waiting while the socket is full (backpressure from the server).
    asio::awaitable<void> write_copy_data(std::span<const std::byte> bytes);
    // Ends COPY FROM STDIN and waits for its result; throws PgError when the server refused.
    asio::awaitable<void> end_copy();
    // The next CopyData message, waiting as needed; nullopt when the server ended the COPY
    // (the final result is checked and a failure is thrown as PgError), or when wake() ended
    // the wait.
    asio::awaitable<std::optional<CopyBuffer>> read_copy_data();
    // A CopyData message if one is already buffered, without waiting.
    std::optional<CopyBuffer> try_read_copy_data();
    // Queues and flushes one CopyData message.
    asio::awaitable<void> put_copy_data(std::span<const std::byte> bytes);

    // Cancels a pending wait on the socket (the waiting operation throws operation_aborted).
    void cancel();
    // Ends a pending read_copy_data() early: it returns nullopt, without an exception (the
    // reader's own flags say why it was woken). No effect when no read waits. A stream reader
    // is woken once per batch at low load, and an exception (thrown again at each coroutine
    // level) cost more than the rest of the wakeup.
    void wake();
    void close();
    // Asks the server to cancel the query it runs for this connection (PQcancel; blocks for the
    // cancel request's own connection). Queries queued behind it in a pipeline are skipped, so
    // a transaction whose COMMIT is queued does not commit. Best effort: errors are ignored.
    void cancel_query();
    // The same, sent from a thread of its own that ends when the request does: for a server
    // that may not answer at all, whose cancel connection could block the caller for as long
    // as its connect timeout.
    void cancel_query_in_background();
    bool is_open() const { return static_cast<bool>(conn_); }
    pg_conn* raw() const { return conn_.raw(); }

private:
    asio::awaitable<void> wait_readable();
    // wait_readable() for read_copy_data(): true when wake() ended the wait.
    asio::awaitable<bool> wait_readable_or_woken();
    asio::awaitable<void> wait_writable();
    asio::awaitable<void> flush();
    asio::awaitable<Result> collect_results(const std::string& context);
    asio::awaitable<pg_result*> next_result();
    // What pipeline_send sent, in order, for pipeline_results to read: a query (its index) or
    // the preparation of a statement (its text).
    struct PipelineItem {
        std::size_t query = 0;
        const std::string* prepares = nullptr;  // key in prepared_, while unconfirmed
    };
    struct SentPipeline {
        std::vector<PipelineItem> items;
        std::size_t queries = 0;
    };
    std::deque<SentPipeline> pipelines_;  // sent, results unread; oldest first
    // try_read_copy_data saw the COPY end (PQgetCopyData -1): read_copy_data reports why, and
    // libpq must not be asked for copy data again meanwhile ("no COPY in progress").
    bool copy_ended_ = false;
    bool copy_waiting_ = false;  // read_copy_data() waits on the socket
    bool woken_ = false;         // wake() ended that wait
    // Prepared statements of this connection: SQL text -> name ("" while being prepared).
    std::unordered_map<std::string, std::string> prepared_;
    std::uint64_t prepared_seq_ = 0;
    asio::awaitable<void> start_copy(const std::string& command, int expected_status);
    void attach_socket();
    void detach_socket();
    [[noreturn]] void throw_connection_error(const std::string& context);

    asio::any_io_executor executor_;
    Connection conn_;
    std::optional<asio::posix::stream_descriptor> socket_;
    std::string redacted_dsn_;
    std::string password_;  // the DSN's, scrubbed from libpq's messages
};

}  // namespace authsync::pg
