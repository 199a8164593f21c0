#include "authsync/engine/target_writer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "authsync/core/utf8.hpp"
#include "authsync/engine/log.hpp"
#include "authsync/pipeline/lanes.hpp"

namespace authsync::engine {

using asio::awaitable;

namespace {

// Statements with up to this many bytes of values go inline (see send_statement).
constexpr std::size_t kInlineBytes = 8 * 1024;

// Whether a statement may go as literals in a simple query with its SAVEPOINT. Only small ones,
// and only well-formed UTF-8: the server checks a query's encoding before running any of it,
// so ill-formed bytes would reject the SAVEPOINT with the statement. As bound parameters they
// are rejected at Bind, after the savepoint: a row error like any other.
bool inline_safe(const apply::Statement& st) {
    if (st.params_bytes() > kInlineBytes) return false;
    for (const auto& p : st.params) {
        if (p && !is_valid_utf8(*p)) return false;
    }
    return true;
}

// Errors that one change can cause in the target: constraint violations (class 23), data
// exceptions (class 22) and errors raised by triggers (P0001). Anything else is not the row's
// fault, and is handled as a failure of the whole session.
bool is_row_error(const pg::PgError& e) {
    const auto& s = e.sqlstate();
    return s.rfind("23", 0) == 0 || s.rfind("22", 0) == 0 || s == "P0001";
}

}  // namespace

TargetWriter::TargetWriter(const config::Config& config, pipeline::WriterId lane,
                           asio::any_io_executor ex)
    : config_(config),
      lane_(lane),
      checkpoint_key_(apply::checkpoint_key(config.source.slot, lane)),
      target_(std::move(ex)),
      log_(logger("engine")) {}

awaitable<void> TargetWriter::connect() {
    co_await target_.connect(config_.target.dsn, "authsync");
    // raw_json is rewritten whole on every change: lz4 compresses a large one several times
    // faster than the default pglz (readers need nothing). Servers built without lz4 refuse.
    try {
        co_await target_.query("SET default_toast_compression = lz4");
    } catch (const pg::PgError& e) {
        if (e.is_connection_failure()) throw;
        log_->debug("target keeps its default_toast_compression: {}", e.what());
    }
}

awaitable<std::pair<Lsn, Lsn>> TargetWriter::prepare_streaming() {
    // Set whatever the target's default: flush reporting follows the target's WAL flush LSN.
    co_await target_.query(config_.apply.synchronous_commit ? "SET synchronous_commit = on"
                                                            : "SET synchronous_commit = off");
    auto r = co_await target_.query(
        "SELECT current_setting('wal_block_size')::bigint, "
        "pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text");
    wal_block_size_ = std::stoull(std::string(r.get(0, 0)));
    if (wal_block_size_ == 0) throw ProtocolError("the target reports wal_block_size 0");
    co_return std::pair{durable_point(Lsn::parse_or_throw(r.get(0, 1)), wal_block_size_),
                        Lsn::parse_or_throw(r.get(0, 2))};
}

bool TargetWriter::full() const {
    return batch_.rows() >= config_.apply.batch_max_rows ||
           batch_.bytes() >= config_.apply.batch_max_bytes;
}

void TargetWriter::open_transaction() {
    if (tx_open_) return;
    defer("BEGIN");
    tx_open_ = true;
}

awaitable<void> TargetWriter::truncate(const pipeline::Operation& op, PgTimestamp commit_time) {
    const auto& d = *op.destination;
    const auto lanes = std::get<pipeline::Truncate>(op.change).lanes;
    // Order matters here: what came before the TRUNCATE goes in first.
    co_await flush_chunk();
    co_await settle();
    if (d.mapping) {
        const auto& rule = d.mapping->rule();
        auto st = apply::truncate_statement(rule, commit_time,
                                            pipeline::lane_condition("id", lane_, lanes));
        co_await sync();
        co_await target_.query_params(st.sql, st.params);
        log_->info("truncate of {} applied to {}", rule.source_name(), rule.target_name());
        co_return;
    }
    // The mirror empties now; what it affected is recomputed with the batch.
    const auto& source = d.mirror->source();
    std::string key = "m.";
    if (!source.key_columns.empty()) key += quote_identifier(source.key_columns.front()) + "::text";
    auto st = apply::mirror_truncate_statement(source, commit_time,
                                               pipeline::lane_condition(key, lane_, lanes));
    co_await execute(st);
    log_->info("truncate of {} applied to its mirror {}", source.source_name(),
               source.mirror_name());
}

awaitable<void> TargetWriter::flush_chunk() {
    open_transaction();
    if (batch_.empty() && affected_.empty()) co_return;
    for (auto& st : batch_.take_statements()) co_await send_statement(std::move(st));
    // Composite targets are recomputed once their mirrors' statements have said what they
    // affect: a second pass, in the same transaction.
    co_await settle();
    for (auto& st : recompute_statements()) co_await send_statement(std::move(st));
}

awaitable<void> TargetWriter::send_statement(apply::Statement st) {
    co_await settle();
    // A savepoint of its own per statement: when the target rejects a change, find which one,
    // and stop naming its key (apply.on_error: stop) or set it aside (dead_letter). Its own
    // name, so that a rollback can only ever reach back to this statement's start (settle()).
    in_flight_savepoint_ = fmt::format("authsync_statement_{}", ++savepoint_seq_);
    if (inline_safe(st)) {
        // Small (low load): one simple query with what was deferred, the savepoint and the
        // statement, its values as literals. Large: bound parameters, cheaper for the server
        // to read than a long literal.
        std::string sql = take_deferred();
        sql += "SAVEPOINT " + in_flight_savepoint_ + "; ";
        sql += st.inline_sql();
        co_await target_.send_query(std::move(sql));
    } else {
        co_await query("SAVEPOINT " + in_flight_savepoint_);
        co_await target_.send_query_params(st.sql, std::move(st.params));
    }
    // The array parameters are on the wire; row_values keeps what a retry needs.
    st.params = {};
    in_flight_ = std::move(st);
}

std::vector<apply::Statement> TargetWriter::recompute_statements() {
    std::vector<apply::Statement> out;
    for (const auto& composite : config_.composites) {
        for (const auto& target : composite.targets) {
            auto it = affected_.find(target.target_name());
            if (it == affected_.end() || it->second.empty()) continue;
            // Counted from its result (handle_result): rows written, rows removed.
            out.push_back(apply::recompute_statement(target, composite.preset + ":" + target.name,
                                                     it->second));
        }
    }
    affected_.clear();
    return out;
}

awaitable<void> TargetWriter::execute(const apply::Statement& st) {
    co_await sync();
    auto r = co_await target_.query_params(st.sql, st.params);
    handle_result(st, r);
}

void TargetWriter::note_affected(const apply::Statement& st, const pg::Result& r) {
    // (target, key, Unix microseconds of the change) per affected row.
    for (int i = 0; i < r.rows(); ++i) {
        const auto target = r.get(i, 0);
        if (target == apply::kMissingMirrorRow) {
            log_->warn("a row of {} with key {} was updated with unchanged TOASTed columns but "
                       "is not in its mirror; it is left out until it changes again (run "
                       "`authsync resync` to copy it)",
                       st.mappings.empty() ? std::string() : st.mappings.front(), r.get(i, 1));
            continue;
        }
        const std::int64_t at = std::stoll(std::string(r.get(i, 2)));
        auto& keys = affected_[std::string(target)];
        auto [it, inserted] = keys.try_emplace(std::string(r.get(i, 1)), at);
        if (!inserted) it->second = std::max(it->second, at);
    }
}

void TargetWriter::handle_result(const apply::Statement& st, const pg::Result& r) {
    using Kind = apply::Statement::Kind;
    if (st.kind == Kind::MirrorUpsert || st.kind == Kind::MirrorDelete) {
        note_affected(st, r);
    } else if (st.kind == Kind::Recompute) {
        // (target, upserted, removed): a soft-deleted user or a removed member is a delete.
        for (int i = 0; i < r.rows(); ++i) {
            batch_.count(std::string(r.get(i, 0)),
                         {std::stoull(std::string(r.get(i, 1))),
                          std::stoull(std::string(r.get(i, 2)))});
        }
    } else if (st.kind == Kind::UpsertPartial) {
        for (int i = 0; i < r.rows(); ++i) {
            if (r.get(i, 1) != "t") continue;
            log_->warn("user {} was updated with unchanged TOASTed columns but was not in the "
                       "target; those keys are missing from its raw_json until they change (run "
                       "`authsync resync` to copy them)",
                       r.get(i, 0));
        }
    }
}

awaitable<void> TargetWriter::settle() {
    if (!in_flight_) co_return;
    auto st = std::move(*in_flight_);
    in_flight_.reset();
    std::optional<pg::PgError> failed;
    try {
        auto r = co_await target_.result();
        handle_result(st, r);
    } catch (const pg::PgError& e) {
        if (!is_row_error(e)) throw;
        failed = e;
    }
    const std::string savepoint = std::move(in_flight_savepoint_);
    if (failed) {
        // The savepoint went out in the same simple query as the statement. Had the server
        // rejected that query before running any of it, the savepoint would not exist, and no
        // other name may stand in for it: an earlier savepoint would undo statements that
        // succeeded. Then the whole target transaction rolls back (its checkpoint with it).
        try {
            co_await query("ROLLBACK TO SAVEPOINT " + savepoint);
        } catch (const pg::PgError& e) {
            if (e.sqlstate() != "3B001") throw;
            throw pg::PgError(fmt::format("the target rejected a statement before its savepoint "
                                          "was set ({}); the target transaction is rolled back "
                                          "whole",
                                          failed->what()),
                              failed->sqlstate());
        }
        co_await apply_one_by_one(st);
    }
    defer("RELEASE SAVEPOINT " + savepoint);
}

void TargetWriter::defer(std::string_view sql) { deferred_.emplace_back(sql); }

std::string TargetWriter::take_deferred() {
    std::string q;
    for (const auto& sql : deferred_) q += sql + "; ";
    deferred_.clear();
    return q;
}

awaitable<pg::Result> TargetWriter::query(std::string sql) {
    std::string q = take_deferred();
    q += sql;
    co_return co_await target_.query(std::move(q));
}

// Before a query with parameters (which cannot share a message): the deferred statements go
// on their own.
awaitable<void> TargetWriter::sync() {
    if (deferred_.empty()) co_return;
    co_await target_.query(take_deferred());
}

// Before a rollback: the in-flight statement's result is read and dropped, whatever it is.
awaitable<void> TargetWriter::discard_in_flight() {
    if (!in_flight_) co_return;
    in_flight_.reset();
    try {
        co_await target_.result();
    } catch (const pg::PgError&) {
        // The transaction rolls back next either way.
    }
}

awaitable<void> TargetWriter::apply_one_by_one(const apply::Statement& st) {
    for (std::size_t i = 0; i < st.rows; ++i) {
        auto one = st.single(i);
        co_await query("SAVEPOINT authsync_row");
        std::optional<pg::PgError> failed;
        try {
            co_await execute(one);
        } catch (const pg::PgError& e) {
            if (!is_row_error(e)) throw;
            failed = e;
        }
        if (!failed) {
            co_await target_.query("RELEASE SAVEPOINT authsync_row");
            continue;
        }
        co_await target_.query("ROLLBACK TO SAVEPOINT authsync_row");
        co_await target_.query("RELEASE SAVEPOINT authsync_row");
        co_await set_aside(one, *failed);
    }
}

std::string TargetWriter::target_of(const std::string& mapping) const {
    std::string target;
    for (const auto& rule : config_.mappings) {
        if (rule.source_name() == mapping) target = rule.target_name();
    }
    for (const auto& composite : config_.composites) {
        for (const auto& source : composite.sources) {
            if (source.source_name() == mapping) target = source.mirror_name();
        }
        for (const auto& t : composite.targets) {
            if (composite.preset + ":" + t.name == mapping) target = t.target_name();
        }
    }
    return target;
}

// One change the target rejected (`one`, a statement of a single row): stop, naming its key,
// or set it aside as a dead letter.
awaitable<void> TargetWriter::set_aside(const apply::Statement& one, const pg::PgError& failed) {
    using Kind = apply::Statement::Kind;
    const auto& mapping = one.mappings.at(0);
    const auto& key = one.keys.at(0);
    // The key identifies the user; the row's values stay out of the message (PII).
    if (config_.apply.on_error == config::OnError::Stop) {
        throw pg::PgError(fmt::format("the target rejected the change to {} key {}: {} (set "
                                      "apply.on_error: dead_letter to set such changes aside "
                                      "and go on)",
                                      mapping, key, failed.what()),
                          failed.sqlstate(), failed.detail(), failed.hint());
    }
    const bool upsert = one.kind != Kind::SoftDelete && one.kind != Kind::HardDelete &&
                        one.kind != Kind::MirrorDelete;
    // Composite statements carry mirror values or keys, not a raw_json: no payload.
    const bool has_payload = one.kind == Kind::UpsertFull || one.kind == Kind::UpsertPartial;
    // Parameters built before the co_await: GCC 12 destroys temporaries of a conditional
    // expression twice inside a coroutine.
    std::optional<std::string> payload, change_time;
    if (has_payload) payload = one.row_values[0][0];
    if (has_payload && one.row_values[0].size() == 2) change_time = one.row_values[0][1];
    pg::Params params = pg::params(config_.source.slot, txn_final_lsn_.to_string(), mapping,
                                   target_of(mapping), escape_ill_formed_utf8(key),
                                   std::string(upsert ? "upsert" : "delete"), payload, change_time,
                                   failed.server_message(), failed.sqlstate());
    co_await record_dead_letter(std::move(params));
    ++dead_letters_;
    // what(), not the server's message that the row keeps: it may quote the row's values.
    log_->warn("dead-lettered the change to {} key {}: {}", mapping, key, failed.what());
}

// Params: slot, lsn, mapping, target, key, op, payload, change_time, error, sqlstate. A dead
// letter must always be storable, whatever the change held: jsonb refuses what json accepts
// (\u0000) and no text column takes ill-formed UTF-8. So the payload goes to `payload` under
// a savepoint, and to `payload_text` (ill-formed bytes shown as \xHH) when jsonb refuses it.
awaitable<void> TargetWriter::record_dead_letter(pg::Params params) {
    static constexpr const char* kInsert =
        "INSERT INTO authsync.dead_letter (slot, lsn, mapping, target, key, op, {}, "
        "change_time, error, sqlstate) VALUES ($1, $2::pg_lsn, $3, $4, $5, $6, {}, "
        "$8::timestamptz, $9, $10)";
    auto& payload = params.at(6);
    if (!payload || is_valid_utf8(*payload)) {
        co_await query("SAVEPOINT authsync_dead_letter");
        std::optional<pg::PgError> refused;
        try {
            co_await target_.query_params(fmt::format(kInsert, "payload", "$7::jsonb"), params);
        } catch (const pg::PgError& e) {
            if (!is_row_error(e)) throw;
            refused = e;
        }
        if (refused) co_await target_.query("ROLLBACK TO SAVEPOINT authsync_dead_letter");
        co_await target_.query("RELEASE SAVEPOINT authsync_dead_letter");
        if (!refused) co_return;
    }
    if (payload) payload = escape_ill_formed_utf8(*payload);
    co_await sync();
    co_await target_.query_params(fmt::format(kInsert, "payload_text", "$7"), std::move(params));
}

// The checkpoint (when given), the COMMIT and the target's WAL positions in one round trip
// (libpq's pipeline mode). A batch that has not begun in the target goes in that same round
// trip, without savepoints: when the target rejects one of its changes, the transaction rolls
// back and the batch goes again statement by statement, each under its savepoint.
// With synchronous_commit off (or a target that runs so), the commit is visible before it is
// durable: the FlushTracker reports its end_lsn once the target's flush passes `committed_at`.
awaitable<CommitPositions> TargetWriter::commit(std::optional<Lsn> end_lsn,
                                                std::optional<PgTimestamp> commit_time) {
    std::vector<pg::PipelineQuery> queries;
    std::vector<apply::Statement> statements;
    const bool whole = !tx_open_ && !batch_.has_mirrors();
    if (whole) {
        statements = batch_.take_statements();
        queries.push_back({"BEGIN", {}});
        for (auto& st : statements) queries.push_back({std::move(st.sql), std::move(st.params)});
    } else {
        co_await flush_chunk();
        co_await settle();
        for (auto& sql : std::exchange(deferred_, {})) queries.push_back({std::move(sql), {}});
    }
    if (end_lsn) {
        auto cp = apply::checkpoint_statement(checkpoint_key_, *end_lsn, commit_time);
        queries.push_back({std::move(cp.sql), std::move(cp.params)});
    }
    queries.push_back({"COMMIT", {}});
    queries.push_back(
        {"SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text", {}});
    auto outcomes = co_await target_.pipeline(queries);
    tx_open_ = false;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        if (!outcomes[i].error) continue;
        const bool statement = whole && i >= 1 && i <= statements.size();
        if (!statement || !is_row_error(*outcomes[i].error)) throw *outcomes[i].error;
        co_await target_.query("ROLLBACK");
        for (std::size_t k = 0; k < statements.size(); ++k) {
            statements[k].sql = std::move(queries[k + 1].sql);
            statements[k].params = std::move(queries[k + 1].params);
        }
        open_transaction();
        for (auto& st : statements) co_await send_statement(std::move(st));
        co_return co_await commit(end_lsn, commit_time);
    }
    for (std::size_t k = 0; k < statements.size(); ++k) {
        handle_result(statements[k], outcomes[k + 1].result);
    }
    const auto& wal = outcomes.back().result;
    if (wal.rows() != 1) throw ProtocolError("the target did not report its WAL position");
    CommitPositions positions;
    if (end_lsn) {
        positions.committed_at = durable_point(Lsn::parse_or_throw(wal.get(0, 0)), wal_block_size_);
    }
    positions.flushed = Lsn::parse_or_throw(wal.get(0, 1));
    co_return positions;
}

awaitable<void> TargetWriter::rollback() {
    batch_.clear();
    affected_.clear();
    dead_letters_ = 0;
    if (tx_open_) {
        co_await discard_in_flight();
        // A BEGIN still deferred never reached the server: nothing to roll back there.
        const bool begun = deferred_.empty() || deferred_.front() != "BEGIN";
        deferred_.clear();
        if (begun) co_await target_.query("ROLLBACK");
        tx_open_ = false;
    }
}

awaitable<Lsn> TargetWriter::flush_lsn() {
    auto r = co_await target_.query("SELECT pg_current_wal_flush_lsn()::text");
    co_return Lsn::parse_or_throw(r.get(0, 0));
}

}  // namespace authsync::engine
