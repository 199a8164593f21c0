#include "authsync/pg/async_connection.hpp"

#include <libpq-fe.h>
#include <thread>

#include <fmt/format.h>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace authsync::pg {

using asio::use_awaitable;

void CopyBuffer::Deleter::operator()(char* p) const {
    PQfreemem(p);
}

AsyncConnection::~AsyncConnection() {
    close();
}

void AsyncConnection::attach_socket() {
    detach_socket();
    int fd = PQsocket(raw());
    if (fd < 0) throw_connection_error("no socket");
    socket_.emplace(executor_, fd);
}

void AsyncConnection::detach_socket() {
    if (socket_) {
        // libpq owns the descriptor: take it back from Asio without closing it.
        boost::system::error_code ec;
        socket_->cancel(ec);
        socket_->release();
        socket_.reset();
    }
}

void AsyncConnection::close() {
    detach_socket();
    conn_.close();
    prepared_.clear();
    pipelines_.clear();
    copy_ended_ = false;
}

void AsyncConnection::cancel_query() {
    if (!conn_) return;
    PGcancel* cancel = PQgetCancel(raw());
    if (cancel == nullptr) return;
    char reason[256];
    PQcancel(cancel, reason, sizeof reason);
    PQfreeCancel(cancel);
}

void AsyncConnection::cancel_query_in_background() {
    if (!conn_) return;
    PGcancel* cancel = PQgetCancel(raw());
    if (cancel == nullptr) return;
    std::thread([cancel] {
        char reason[256];
        PQcancel(cancel, reason, sizeof reason);
        PQfreeCancel(cancel);
    }).detach();
}

void AsyncConnection::cancel() {
    if (socket_) {
        boost::system::error_code ec;
        socket_->cancel(ec);
    }
}

void AsyncConnection::throw_connection_error(const std::string& context) {
    std::string reason =
        conn_ ? connection_message(raw(), PQerrorMessage(raw()), password_) : "no connection";
    std::string message = context.empty() ? reason : fmt::format("{}: {}", context, reason);
    // Only a connection libpq reports lost (no connection at all counts) is worth a reconnect;
    // libpq's other failures (a call out of turn, no memory) are not.
    if (PQstatus(raw()) == CONNECTION_BAD) throw PgError::connection_loss(std::move(message));
    throw PgError(std::move(message));
}

asio::awaitable<void> AsyncConnection::wait_readable() {
    co_await socket_->async_wait(asio::posix::stream_descriptor::wait_read, use_awaitable);
}

asio::awaitable<bool> AsyncConnection::wait_readable_or_woken() {
    boost::system::error_code ec;
    copy_waiting_ = true;
    co_await socket_->async_wait(asio::posix::stream_descriptor::wait_read,
                                 asio::redirect_error(use_awaitable, ec));
    copy_waiting_ = false;
    const bool woken = std::exchange(woken_, false);
    if (ec == asio::error::operation_aborted && woken) co_return true;
    if (ec) throw boost::system::system_error(ec);
    co_return false;
}

void AsyncConnection::wake() {
    if (!copy_waiting_ || !socket_) return;
    woken_ = true;
    boost::system::error_code ec;
    socket_->cancel(ec);
}

asio::awaitable<void> AsyncConnection::wait_writable() {
    co_await socket_->async_wait(asio::posix::stream_descriptor::wait_write, use_awaitable);
}

asio::awaitable<void> AsyncConnection::connect(std::string dsn, std::string application_name,
                                               bool replication) {
    close();
    validate_dsn(dsn, "dsn");
    redacted_dsn_ = redact_dsn(dsn);
    password_ = dsn_password(dsn).value_or("");
    // Keywords after the expanded dbname override what the DSN says.
    std::vector<const char*> keys;
    std::vector<const char*> values;
    keys.push_back("dbname");
    values.push_back(dsn.c_str());
    keys.push_back("application_name");
    values.push_back(application_name.c_str());
    // Pinned whatever PGCLIENTENCODING or ALTER ROLE ... SET say: text from a LATIN1 provider
    // arrives converted, and literals are read the way authsync writes them (a multibyte
    // SJIS/BIG5/GBK character may end in the byte of a backslash).
    keys.push_back("client_encoding");
    values.push_back(kClientEncoding);
    if (replication) {
        keys.push_back("replication");
        values.push_back("database");
        keys.push_back("options");
        values.push_back(
            "-c datestyle=ISO -c timezone=UTC -c extra_float_digits=3 "
            "-c intervalstyle=iso_8601 -c standard_conforming_strings=on");
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    conn_ = Connection(PQconnectStartParams(keys.data(), values.data(), 1));
    if (!conn_) throw PgError("could not allocate a connection");
    if (PQstatus(raw()) == CONNECTION_BAD) {
        throw_connection_error("could not connect to " + redacted_dsn_);
    }
    // The socket may change while connecting (e.g. trying the next host): re-attach each time.
    PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
    while (poll != PGRES_POLLING_OK) {
        if (poll == PGRES_POLLING_FAILED) {
            throw_connection_error("could not connect to " + redacted_dsn_);
        }
        attach_socket();
        if (poll == PGRES_POLLING_READING)
            co_await wait_readable();
        else
            co_await wait_writable();
        poll = PQconnectPoll(raw());
    }
    if (PQsetnonblocking(raw(), 1) != 0) throw_connection_error("could not set non-blocking mode");
    route_notices(raw());
    attach_socket();
    // The server reports both at start. A role or database set to the old string syntax, or
    // a SQL_ASCII server, gets them set for this session (a SET beats ALTER ROLE ... SET).
    if (!session_settings_pinned(raw())) {
        co_await query(pin_session_settings_sql(raw()));
        if (!session_settings_pinned(raw())) {
            throw PgError(
                "the server did not take the session's client_encoding and "
                "standard_conforming_strings on");
        }
    }
}

asio::awaitable<void> AsyncConnection::flush() {
    for (;;) {
        int rc = PQflush(raw());
        if (rc == 0) co_return;
        if (rc < 0) throw_connection_error("could not send data to the server");
        // More to send: wait until the socket can take it, or the server has something for
        // us (libpq wants input consumed so the server does not block on its own output).
        co_await wait_writable();
    }
}

asio::awaitable<Result> AsyncConnection::collect_results(const std::string& context) {
    co_await flush();
    Result last;
    std::optional<PgError> failure;
    for (;;) {
        while (PQisBusy(raw())) {
            co_await wait_readable();
            if (!PQconsumeInput(raw())) throw_connection_error(context);
        }
        PGresult* res = PQgetResult(raw());
        if (res == nullptr) break;
        Result r(res);
        auto status = PQresultStatus(res);
        if (status == PGRES_COPY_BOTH || status == PGRES_COPY_IN || status == PGRES_COPY_OUT) {
            co_return r;  // the caller continues with the COPY protocol
        }
        if (!failure) {
            try {
                check_result(raw(), res, context);
            } catch (PgError& e) {
                failure = std::move(e);  // keep reading until libpq has no more results
            }
        }
        last = std::move(r);
    }
    if (failure) throw *failure;
    co_return last;
}

asio::awaitable<Result> AsyncConnection::query(std::string sql) {
    if (!PQsendQuery(raw(), sql.c_str())) throw_connection_error("could not send query");
    co_return co_await collect_results("");
}

asio::awaitable<pg_result*> AsyncConnection::next_result() {
    while (PQisBusy(raw())) {
        co_await wait_readable();
        if (!PQconsumeInput(raw())) throw_connection_error("");
    }
    co_return PQgetResult(raw());
}

asio::awaitable<std::vector<PipelineOutcome>> AsyncConnection::pipeline(
    const std::vector<PipelineQuery>& queries) {
    co_await pipeline_send(queries);
    co_return co_await pipeline_results();
}

asio::awaitable<void> AsyncConnection::pipeline_send(const std::vector<PipelineQuery>& queries) {
    if (!PQenterPipelineMode(raw())) throw_connection_error("could not enter pipeline mode");
    SentPipeline pipeline;
    pipeline.queries = queries.size();
    for (std::size_t i = 0; i < queries.size(); ++i) {
        const auto& q = queries[i];
        std::vector<const char*> values;
        values.reserve(q.params.size());
        for (const auto& p : q.params) values.push_back(p ? p->c_str() : nullptr);
        const int n = static_cast<int>(values.size());
        // Binary parameters carry their lengths (they may hold NUL bytes).
        std::vector<int> lengths, formats;
        if (q.binary) {
            for (const auto& p : q.params) lengths.push_back(p ? static_cast<int>(p->size()) : 0);
            formats.assign(q.params.size(), 1);
        }
        const int* length_ptr = q.binary ? lengths.data() : nullptr;
        const int* format_ptr = q.binary ? formats.data() : nullptr;
        int sent = 0;
        if (q.prepared) {
            auto [it, fresh] = prepared_.try_emplace(q.sql);
            if (fresh || it->second.empty()) {
                it->second = fmt::format("authsync_{}", ++prepared_seq_);
                if (!PQsendPrepare(raw(), it->second.c_str(), q.sql.c_str(), n, nullptr)) {
                    throw_connection_error("could not send query");
                }
                pipeline.items.push_back({i, &it->first});
            }
            sent = PQsendQueryPrepared(raw(), it->second.c_str(), n, values.data(), length_ptr,
                                       format_ptr, 0);
        } else {
            sent = PQsendQueryParams(raw(), q.sql.c_str(), n, nullptr, values.data(), length_ptr,
                                     format_ptr, 0);
        }
        if (!sent) throw_connection_error("could not send query");
        pipeline.items.push_back({i, nullptr});
    }
    if (!PQpipelineSync(raw())) throw_connection_error("could not send a pipeline sync");
    pipelines_.push_back(std::move(pipeline));
    // libpq holds its own copy now; the server starts on it while the caller goes on.
    co_await flush();
}

asio::awaitable<std::vector<PipelineOutcome>> AsyncConnection::pipeline_results() {
    // Each item's results end with a null result; the sync point's result ends the pipeline.
    if (pipelines_.empty()) throw std::logic_error("no pipeline was sent");
    auto pipeline = std::move(pipelines_.front());
    pipelines_.pop_front();
    std::vector<PipelineOutcome> outcomes(pipeline.queries);
    const auto& items = pipeline.items;
    std::vector<bool> prepared(items.size(), false);
    std::size_t index = 0;
    bool has_result = false;
    for (;;) {
        PGresult* res = co_await next_result();
        if (res == nullptr) {
            if (has_result) ++index;
            has_result = false;
            continue;
        }
        Result r(res);
        const auto status = PQresultStatus(res);
        if (status == PGRES_PIPELINE_SYNC) break;
        if (index >= items.size()) throw PgError("the server sent more results than queries");
        const auto& item = items[index];
        auto& outcome = outcomes[item.query];
        has_result = true;
        if (status == PGRES_PIPELINE_ABORTED) {
            if (!outcome.error) outcome.skipped = true;
            continue;
        }
        try {
            check_result(raw(), res, "");
            if (item.prepares) {
                prepared[index] = true;  // the name stands from now on
                continue;
            }
            outcome.result = std::move(r);
        } catch (PgError& e) {
            // A failed preparation fails its query (which the server then skips).
            outcome.error = std::move(e);
        }
    }
    // A preparation that did not succeed is made again next time.
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (items[i].prepares && !prepared[i]) prepared_[*items[i].prepares].clear();
    }
    if (pipelines_.empty() && !PQexitPipelineMode(raw())) {
        throw_connection_error("could not leave pipeline mode");
    }
    co_return outcomes;
}

asio::awaitable<Result> AsyncConnection::query_params(std::string sql, Params params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    if (!PQsendQueryParams(raw(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                           values.data(), nullptr, nullptr, 0)) {
        throw_connection_error("could not send query");
    }
    co_return co_await collect_results("");
}

asio::awaitable<void> AsyncConnection::start_copy(const std::string& command, int expected_status) {
    if (!PQsendQuery(raw(), command.c_str())) throw_connection_error("could not send command");
    Result r = co_await collect_results("");
    if (!r || PQresultStatus(r.raw()) != expected_status) {
        throw PgError("server did not enter COPY mode for: " + command.substr(0, 60));
    }
}

asio::awaitable<void> AsyncConnection::start_copy_both(const std::string& command) {
    copy_ended_ = false;
    co_await start_copy(command, PGRES_COPY_BOTH);
}

asio::awaitable<void> AsyncConnection::start_copy_out(const std::string& command) {
    co_await start_copy(command, PGRES_COPY_OUT);
}

asio::awaitable<void> AsyncConnection::start_copy_in(const std::string& command) {
    co_await start_copy(command, PGRES_COPY_IN);
}

asio::awaitable<void> AsyncConnection::write_copy_data(std::span<const std::byte> bytes) {
    for (;;) {
        int rc = PQputCopyData(raw(), reinterpret_cast<const char*>(bytes.data()),
                               static_cast<int>(bytes.size()));
        if (rc == 1) break;
        if (rc < 0) throw_connection_error("could not send COPY data");
        co_await wait_writable();  // 0: libpq's buffer is full
    }
    // Wait until libpq's buffer has gone to the socket: in non-blocking mode libpq would
    // otherwise grow it without bound while the server is slower than we are.
    co_await flush();
}

asio::awaitable<void> AsyncConnection::end_copy() {
    for (;;) {
        int rc = PQputCopyEnd(raw(), nullptr);
        if (rc == 1) break;
        if (rc < 0) throw_connection_error("could not end COPY");
        co_await wait_writable();
    }
    co_await collect_results("");
}

std::optional<CopyBuffer> AsyncConnection::try_read_copy_data() {
    // A message already in libpq's buffer first: PQconsumeInput left-justifies that buffer
    // on every call, so calling it per message while draining a backlog costs a memmove of
    // everything still unread (quadratic; it was 90% of the drain's CPU).
    if (copy_ended_) return std::nullopt;
    char* buf = nullptr;
    int n = PQgetCopyData(raw(), &buf, 1);
    if (n == 0) {
        // Nothing whole buffered: take whatever the socket already holds, without waiting.
        if (!PQconsumeInput(raw())) throw_connection_error("could not read replication data");
        n = PQgetCopyData(raw(), &buf, 1);
    }
    if (n > 0) return CopyBuffer(buf, n);
    if (n == 0) return std::nullopt;
    if (n == -2) throw_connection_error("could not read replication data");
    copy_ended_ = true;  // -1: COPY finished; read_copy_data reports it
    return std::nullopt;
}

asio::awaitable<std::optional<CopyBuffer>> AsyncConnection::read_copy_data() {
    for (;;) {
        char* buf = nullptr;
        int n = std::exchange(copy_ended_, false) ? -1 : PQgetCopyData(raw(), &buf, 1);
        if (n > 0) co_return CopyBuffer(buf, n);
        if (n == -2) throw_connection_error("could not read replication data");
        if (n == -1) {
            // The server ended the stream: its final result says why.
            for (;;) {
                PGresult* res = PQgetResult(raw());
                if (res == nullptr) break;
                Result r(res);
                check_result(raw(), res, "replication stream ended");
            }
            co_return std::nullopt;
        }
        // Push out any status update that did not fit in the socket earlier.
        if (PQflush(raw()) < 0) throw_connection_error("could not send replication status");
        if (co_await wait_readable_or_woken()) co_return std::nullopt;
        if (!PQconsumeInput(raw())) throw_connection_error("could not read replication data");
    }
}

asio::awaitable<void> AsyncConnection::put_copy_data(std::span<const std::byte> bytes) {
    int rc = PQputCopyData(raw(), reinterpret_cast<const char*>(bytes.data()),
                           static_cast<int>(bytes.size()));
    if (rc != 1) throw_connection_error("could not send replication status");
    // Flushing here without waiting keeps the reader's pending wait undisturbed; what does
    // not fit in the socket now goes out on the next flush.
    if (PQflush(raw()) < 0) throw_connection_error("could not send replication status");
    co_return;
}

}  // namespace authsync::pg
