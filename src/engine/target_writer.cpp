#include "authsync/engine/target_writer.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "authsync/core/utf8.hpp"
#include "authsync/engine/log.hpp"
#include "authsync/pg/error_class.hpp"
#include "authsync/pipeline/lanes.hpp"

namespace authsync::engine {

using asio::awaitable;

namespace {

// Errors that one change can cause in the target (pg::classify's Row: constraint violations,
// data exceptions, a trigger's RAISE EXCEPTION). Anything else is not the row's fault, and is
// handled as a failure of the whole session.
bool is_row_error(const pg::PgError& e) {
    return pg::classify(e) == pg::ErrorClass::Row;
}

pg::PipelineQuery query_of(std::string sql) {
    return {std::move(sql), {}};
}

// The same, prepared once per connection: the queries of every batch's commit, parsed (and
// the WAL-position query planned) once instead of at every commit.
pg::PipelineQuery prepared_of(std::string sql) {
    return {std::move(sql), {}, true};
}

// The first query of a pipeline that failed, if any.
std::optional<std::size_t> first_failure(const std::vector<pg::PipelineOutcome>& outcomes) {
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        if (outcomes[i].error) return i;
    }
    return std::nullopt;
}

}  // namespace

TargetWriter::TargetWriter(const config::Config& config, std::size_t target,
                           pipeline::WriterId lane, pipeline::WriterId id, asio::any_io_executor ex)
    : config_(config),
      target_index_(target),
      lane_(lane),
      id_(id),
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
        if (pg::classify(e) == pg::ErrorClass::Transient) throw;
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

bool TargetWriter::must_flush_chunk() const {
    const std::size_t rows = config_.apply.batch_max_rows;
    return batch_.bytes() >= config_.apply.batch_max_bytes ||
           batch_.rows() >= (tx_open_ ? rows : 2 * rows);
}

void TargetWriter::open_transaction() {
    if (tx_open_) return;
    begin_pending_ = true;
    tx_open_ = true;
}

// Runs `queries` in one pipeline, after the transaction's BEGIN when it has not gone yet.
awaitable<std::vector<pg::PipelineOutcome>> TargetWriter::run(
    std::vector<pg::PipelineQuery> queries) {
    co_await send(std::move(queries));
    co_return co_await results();
}

awaitable<void> TargetWriter::send(std::vector<pg::PipelineQuery> queries) {
    require_commit_read("a query");
    if (begin_pending_) {
        queries.insert(queries.begin(), query_of("BEGIN"));
        begun_in_pipeline_ = true;
    }
    begin_pending_ = false;
    ++round_trips_;
    co_await target_.pipeline_send(queries);
}

awaitable<std::vector<pg::PipelineOutcome>> TargetWriter::results() {
    auto outcomes = co_await target_.pipeline_results();
    if (std::exchange(begun_in_pipeline_, false)) {
        if (outcomes.front().error) throw *outcomes.front().error;
        outcomes.erase(outcomes.begin());
    }
    co_return outcomes;
}

// Runs one query, alone: its result, or its error thrown.
awaitable<pg::Result> TargetWriter::run_one(std::string sql, pg::Params params) {
    std::vector<pg::PipelineQuery> queries;
    queries.push_back({std::move(sql), std::move(params)});
    auto outcomes = co_await run(std::move(queries));
    if (outcomes.front().error) throw *outcomes.front().error;
    co_return std::move(outcomes.front().result);
}

awaitable<void> TargetWriter::truncate(const pipeline::Operation& op, PgTimestamp commit_time) {
    const auto& d = *op.destination;
    // The rows of the operation's lane (a sink that takes lanes over applies every lane's).
    const auto [lane, lanes] = std::get<pipeline::Truncate>(op.change);
    // Order matters here: what came before the TRUNCATE goes in first.
    co_await flush_chunk();
    co_await settle();
    if (d.mapping) {
        const auto& rule = d.mapping->rule();
        auto st = apply::truncate_statement(rule, commit_time,
                                            pipeline::lane_condition("id", lane, lanes));
        co_await run_one(std::move(st.sql), std::move(st.params));
        log_->info("truncate of {} applied to {}", rule.source_name(), rule.target_name());
        co_return;
    }
    // The mirror empties now; what it affected is recomputed with the batch.
    const auto& source = d.mirror->source();
    std::string key = "m.";
    if (!source.key_columns.empty()) key += quote_identifier(source.key_columns.front()) + "::text";
    auto st = apply::mirror_truncate_statement(source, commit_time,
                                               pipeline::lane_condition(key, lane, lanes));
    co_await execute(st);
    log_->info("truncate of {} applied to its mirror {}", source.source_name(),
               source.mirror_name());
}

awaitable<void> TargetWriter::flush_chunk() {
    open_transaction();
    if (batch_.empty() && affected_.empty()) co_return;
    tx_rows_ += batch_.rows();
    for (auto& st : batch_.take_statements()) {
        co_await send_statement(std::move(st), txn_final_lsn_);
    }
    // Composite targets are recomputed once their mirrors' statements have said what they
    // affect: a second pass, in the same transaction. Otherwise the last statement executes
    // while the stream goes on and the next chunk is decoded (W2, one transaction of 1,000,000
    // rows: 1.10x-1.25x faster than when every chunk waited for its results here).
    if (!mirror_in_flight() && affected_.empty()) co_return;
    co_await settle();
    for (auto& st : recompute_statements()) co_await send_statement(std::move(st), txn_final_lsn_);
}

// The statement in flight is a mirror's: its results say which composite rows to recompute.
bool TargetWriter::mirror_in_flight() const {
    return in_flight_ && in_flight_->statement.is_mirror();
}

awaitable<void> TargetWriter::send_statement(apply::Statement st, Lsn source) {
    co_await settle();
    // A savepoint of its own per statement: when the target rejects a change, find which one,
    // and stop naming its key (apply.on_error: stop) or set it aside (dead_letter). Its own
    // name, so that a rollback can only ever reach back to this statement's start. The three
    // go in one pipeline that the server runs while the stream goes on; the statement keeps
    // its per-change values for a one-by-one retry.
    InFlight sent{std::move(st), source, fmt::format("authsync_statement_{}", ++savepoint_seq_)};
    std::vector<pg::PipelineQuery> queries;
    queries.push_back(query_of("SAVEPOINT " + sent.savepoint));
    queries.push_back({sent.statement.sql, std::move(sent.statement.params), true,
                       !sent.statement.arrays.empty()});
    queries.push_back(query_of("RELEASE SAVEPOINT " + sent.savepoint));
    co_await send(std::move(queries));
    sent.statement.params = {};
    in_flight_ = std::move(sent);
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
    std::vector<pg::PipelineQuery> queries;
    queries.push_back({st.sql, st.params, false, !st.arrays.empty()});
    auto outcomes = co_await run(std::move(queries));
    if (outcomes.front().error) throw *outcomes.front().error;
    handle_result(st, outcomes.front().result);
}

void TargetWriter::note_affected(const apply::Statement& st, const pg::Result& r) {
    // (target, key, Unix microseconds of the change) per affected row.
    for (int i = 0; i < r.rows(); ++i) {
        const auto target = r.get(i, 0);
        if (target == apply::kMissingMirrorRow) {
            log_->warn(
                "a row of {} with key {} was updated with unchanged TOASTed columns but "
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
    if (st.is_mirror()) {
        note_affected(st, r);
    } else if (st.kind == Kind::Recompute) {
        // (target, upserted, removed): a soft-deleted user or a removed member is a delete.
        for (int i = 0; i < r.rows(); ++i) {
            batch_.count(std::string(r.get(i, 0)), {std::stoull(std::string(r.get(i, 1))),
                                                    std::stoull(std::string(r.get(i, 2)))});
        }
    } else if (st.kind == Kind::UpsertPartial) {
        for (int i = 0; i < r.rows(); ++i) {
            if (r.get(i, 1) != "t") continue;
            log_->warn(
                "user {} was updated with unchanged TOASTed columns but was not in the "
                "target; those keys are missing from its raw_json until they change (run "
                "`authsync resync` to copy them)",
                r.get(i, 0));
        }
    }
}

awaitable<void> TargetWriter::settle() {
    if (!in_flight_) co_return;
    const auto sent = std::move(*in_flight_);
    in_flight_.reset();
    auto outcomes = co_await results();  // SAVEPOINT, the statement, RELEASE
    const auto failed = first_failure(outcomes);
    if (!failed) {
        handle_result(sent.statement, outcomes[1].result);
        co_return;
    }
    const auto& error = *outcomes[*failed].error;
    if (*failed != 1 || !is_row_error(error)) throw error;
    // Back to the statement's own savepoint (the transaction is aborted until then), then its
    // changes one by one to find the culprit.
    co_await run_one("ROLLBACK TO SAVEPOINT " + sent.savepoint);
    co_await apply_one_by_one(sent.statement, sent.source);
}

// Before a rollback: the in-flight statement's results are read and dropped, whatever they are.
awaitable<void> TargetWriter::discard_in_flight() {
    if (!in_flight_) co_return;
    in_flight_.reset();
    co_await target_.pipeline_results();
    begun_in_pipeline_ = false;
}

// Undoes what the pipeline after `savepoint` did, in a transaction a failure left aborted.
awaitable<void> TargetWriter::roll_back_to(const std::string& savepoint) {
    std::vector<pg::PipelineQuery> undo;
    undo.push_back(query_of("ROLLBACK TO SAVEPOINT " + savepoint));
    undo.push_back(query_of("RELEASE SAVEPOINT " + savepoint));
    auto undone = co_await run(std::move(undo));
    if (auto f = first_failure(undone)) throw *undone[*f].error;
}

awaitable<void> TargetWriter::apply_one_by_one(const apply::Statement& st, Lsn source) {
    for (std::size_t i = 0; i < st.rows; ++i) {
        auto one = st.single(i);
        std::vector<pg::PipelineQuery> queries;
        queries.push_back(query_of("SAVEPOINT authsync_row"));
        queries.push_back({one.sql, one.params, true, !one.arrays.empty()});
        queries.push_back(query_of("RELEASE SAVEPOINT authsync_row"));
        auto outcomes = co_await run(std::move(queries));
        const auto failed = first_failure(outcomes);
        if (!failed) {
            handle_result(one, outcomes[1].result);
            continue;
        }
        const auto error = *outcomes[*failed].error;
        if (*failed != 1 || !is_row_error(error)) throw error;
        co_await roll_back_to("authsync_row");
        // Its own source transaction (the last that changed it in this batch) when known.
        const Lsn culprit = one.sources.empty() ? source : one.sources.front();
        co_await set_aside(one, error, culprit);
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
awaitable<void> TargetWriter::set_aside(const apply::Statement& one, const pg::PgError& failed,
                                        Lsn source) {
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
    pg::Params params =
        pg::params(config_.source.slot, source.to_string(), mapping, target_of(mapping),
                   escape_ill_formed_utf8(key), std::string(upsert ? "upsert" : "delete"), payload,
                   change_time, failed.server_message(), failed.sqlstate());
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
        std::vector<pg::PipelineQuery> queries;
        queries.push_back(query_of("SAVEPOINT authsync_dead_letter"));
        queries.push_back({fmt::format(kInsert, "payload", "$7::jsonb"), params});
        queries.push_back(query_of("RELEASE SAVEPOINT authsync_dead_letter"));
        auto outcomes = co_await run(std::move(queries));
        const auto failed = first_failure(outcomes);
        if (!failed) co_return;
        if (*failed != 1 || !is_row_error(*outcomes[1].error)) throw *outcomes[*failed].error;
        co_await roll_back_to("authsync_dead_letter");
    }
    if (payload) payload = escape_ill_formed_utf8(*payload);
    co_await run_one(fmt::format(kInsert, "payload_text", "$7"), std::move(params));
}

// The checkpoint (when given), the COMMIT and the target's WAL positions, to end a pipeline.
std::vector<pg::PipelineQuery> TargetWriter::commit_queries(
    std::optional<Lsn> end_lsn, std::optional<PgTimestamp> commit_time) const {
    std::vector<pg::PipelineQuery> queries;
    if (end_lsn) {
        auto cp = every_lane_ ? apply::every_lane_checkpoint_statement(config_.source.slot,
                                                                       *end_lsn, commit_time)
                              : apply::checkpoint_statement(checkpoint_key_, *end_lsn, commit_time);
        queries.push_back({std::move(cp.sql), std::move(cp.params), true});
    }
    queries.push_back(prepared_of("COMMIT"));
    queries.push_back(
        prepared_of("SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text"));
    return queries;
}

// With synchronous_commit off (or a target that runs so), the commit is visible before it is
// durable: the FlushTracker reports its end_lsn once the target's flush passes `committed_at`.
CommitPositions TargetWriter::positions_of(const pg::Result& wal, bool checkpointed) const {
    if (wal.rows() != 1) throw ProtocolError("the target did not report its WAL position");
    CommitPositions positions;
    if (checkpointed) {
        positions.committed_at = durable_point(Lsn::parse_or_throw(wal.get(0, 0)), wal_block_size_);
    }
    positions.flushed = Lsn::parse_or_throw(wal.get(0, 1));
    return positions;
}

// A batch that has not begun in the target goes whole, in one round trip, without
// savepoints: BEGIN, its statements, the checkpoint, COMMIT, the WAL positions. When the
// target rejects one of its changes, finish_commit() rolls back and sends the batch again
// statement by statement, each under its savepoint. A batch that has begun (chunks of a large
// transaction, or composite mirrors, whose results decide what to recompute) sends its rest
// first, then the checkpoint and COMMIT. A whole batch may go behind a commit still
// executing (can_chain): its guard then makes it fail unless that one committed.
awaitable<void> TargetWriter::send_commit(std::optional<Lsn> end_lsn,
                                          std::optional<PgTimestamp> commit_time) {
    if (failed_) throw std::logic_error("a commit after one that failed on this connection");
    SentCommit sent;
    sent.end_lsn = end_lsn;
    sent.commit_time = commit_time;
    sent.final_lsn = txn_final_lsn_;
    if (!sent_commits_.empty()) {
        if (!chainable()) throw std::logic_error("a commit came before the last commit was read");
        sent.guarded = true;
    }
    if (!staged_.empty() && !batch_.empty()) {
        throw std::logic_error("changes were added to a batch after it was staged");
    }
    if (goes_whole()) {
        if (staged_.empty()) tx_rows_ += batch_.rows();
        sent.statements = staged_.empty() ? batch_.take_statements() : std::exchange(staged_, {});
        sent.queries.push_back(prepared_of("BEGIN"));
        if (sent.guarded) {
            auto guard =
                apply::chain_guard_statement(checkpoint_key_, *sent_commits_.back().end_lsn);
            sent.queries.push_back({std::move(guard.sql), std::move(guard.params), true});
        }
        for (auto& st : sent.statements) {
            const bool binary = !st.arrays.empty();
            sent.queries.push_back({std::move(st.sql), std::move(st.params), true, binary});
        }
    } else {
        co_await flush_chunk();
        co_await settle();
        // A transaction opened but not begun in the target yet (nothing was sent in it)
        // begins in this pipeline.
        if (std::exchange(begin_pending_, false)) sent.queries.push_back(query_of("BEGIN"));
    }
    for (auto& q : commit_queries(end_lsn, commit_time)) sent.queries.push_back(std::move(q));
    tx_open_ = false;
    sent.rows = std::exchange(tx_rows_, 0);
    ++round_trips_;
    // Listed before it goes: should the commit before it fail while this one is still being
    // sent, replay_with_followers() finds it (deque references outlive other elements' push
    // and pop).
    auto& pending = sent_commits_.emplace_back(std::move(sent));
    const bool chained = pending.guarded;
    co_await target_.pipeline_send(pending.queries);
    // By now a chained commit may have been read, or replayed, already: it keeps its arrays.
    if (chained) co_return;
    // libpq holds its copy now: a replay rebuilds the arrays from the per-change values, so
    // the batch is not held twice while the next one is received.
    for (std::size_t k = 0; k < pending.statements.size(); ++k) {
        if (!pending.statements[k].arrays.empty()) {
            pending.queries[k + pending.first_statement()].params = {};
        }
    }
}

bool TargetWriter::can_chain() const {
    // A small batch only: chaining is for latency at low load (one or two transactions a
    // batch); from a backlog a batch grows while one executes instead, and a chained batch
    // keeps its arrays until it is read (W1's peak RSS went from 36 to 70 MB without this
    // bound).
    constexpr std::size_t kChainMaxRows = 100;
    return chainable() && staged_.empty() && batch_.rows() <= kChainMaxRows;
}

// Behind one commit only, still executing (not being replayed: results_read), that wrote this
// writer's checkpoint row.
bool TargetWriter::chainable() const {
    return sent_commits_.size() == 1 && sent_commits_.front().end_lsn &&
           !sent_commits_.front().results_read && !every_lane_ && goes_whole() && !in_flight_;
}

// A failed commit ends what this connection may send (send_commit throws): a batch chained
// behind it must never go unguarded, as it would once the failed one is off the list.
// Busy meanwhile: a replay (replay_with_followers) queries the connection after its commit has
// left sent_commits_, and the reader's durability probe (Session::check_durable, which skips
// busy writers) must not send a query in between ("another command is already in progress").
awaitable<CommitPositions> TargetWriter::finish_commit() {
    finishing_ = true;
    try {
        auto positions = co_await read_commit();
        finishing_ = false;
        co_return positions;
    } catch (...) {
        finishing_ = false;
        failed_ = true;
        throw;
    }
}

awaitable<CommitPositions> TargetWriter::read_commit() {
    if (sent_commits_.empty()) throw std::logic_error("no commit was sent");
    if (auto settled = sent_commits_.front().settled) {
        sent_commits_.pop_front();
        co_return *settled;
    }
    auto outcomes = co_await target_.pipeline_results();
    auto sent = std::move(sent_commits_.front());
    sent_commits_.pop_front();
    const std::size_t n = sent.statements.size();
    const std::size_t first = sent.first_statement();
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        if (!outcomes[i].error) continue;
        if (sent.guarded && i == 1) {
            // The batch before reported no failure, yet its checkpoint is not there.
            throw pg::PgError(
                "the target does not hold the checkpoint of the batch committed before this "
                "one (was authsync.checkpoint changed?): this batch was not applied");
        }
        const bool statement = n > 0 && i >= first && i < first + n;
        if (!statement || !is_row_error(*outcomes[i].error)) throw *outcomes[i].error;
        co_return co_await replay_with_followers(std::move(sent));
    }
    for (std::size_t k = 0; k < n; ++k) {
        handle_result(sent.statements[k], outcomes[k + first].result);
    }
    auto positions = positions_of(outcomes.back().result, sent.end_lsn.has_value());
    positions.rows = sent.rows;
    co_return positions;
}

// The target rejected a change of `sent`, whose transaction is left aborted: a batch sent
// behind it failed at its BEGIN and was skipped whole. Their results are read; `sent` goes
// again statement by statement, then each batch behind it, in order (finish_commit() then
// returns what each became).
awaitable<CommitPositions> TargetWriter::replay_with_followers(SentCommit sent) {
    for (auto& behind : sent_commits_) {
        behind.results_read = true;  // from now on nothing may chain behind it (chainable)
        // It began in that batch's aborted transaction: its BEGIN failed, the rest was skipped.
        const auto outcomes = co_await target_.pipeline_results();
        if (outcomes.empty() || !outcomes.front().error) {
            throw pg::PgError("a batch sent behind one the target rejected was not skipped");
        }
    }
    co_await rollback_transaction();
    auto positions = co_await replay_one_by_one(std::move(sent));
    for (auto& behind : sent_commits_) {
        auto settled = co_await replay_one_by_one(std::move(behind));
        behind.settled = settled;
    }
    co_return positions;
}

// A whole batch the target rejected a change of, again, statement by statement under
// savepoints; the culprits stop the session or become dead letters, each named by the source
// transaction that last changed it (the stream may have gone on since, and goes on meanwhile).
awaitable<CommitPositions> TargetWriter::replay_one_by_one(SentCommit sent) {
    open_transaction();
    for (std::size_t k = 0; k < sent.statements.size(); ++k) {
        auto& st = sent.statements[k];
        auto& query = sent.queries[k + sent.first_statement()];
        st.sql = std::move(query.sql);
        st.params = st.arrays.empty() ? std::move(query.params) : st.array_params();
        co_await send_statement(std::move(st), sent.final_lsn);
    }
    co_await settle();
    // The first statement's pipeline carried the BEGIN; with no statement (a checkpoint-only
    // batch) run() sends it with these.
    auto outcomes = co_await run(commit_queries(sent.end_lsn, sent.commit_time));
    tx_open_ = false;
    if (auto f = first_failure(outcomes)) throw *outcomes[*f].error;
    auto positions = positions_of(outcomes.back().result, sent.end_lsn.has_value());
    positions.rows = sent.rows;
    co_return positions;
}

void TargetWriter::stage_commit() {
    if (!staged_.empty() || batch_.empty() || !goes_whole()) return;
    tx_rows_ += batch_.rows();
    staged_ = batch_.take_statements();
}

void TargetWriter::require_commit_read(const char* what) const {
    if (std::any_of(sent_commits_.begin(), sent_commits_.end(),
                    [](const SentCommit& c) { return !c.results_read; }))
        throw std::logic_error(fmt::format("{} came before the last commit was read", what));
}

awaitable<void> TargetWriter::rollback_transaction() {
    ++round_trips_;
    co_await target_.query("ROLLBACK");
}

awaitable<void> TargetWriter::rollback() {
    require_commit_read("a rollback");
    batch_.clear();
    staged_.clear();
    tx_rows_ = 0;
    affected_.clear();
    dead_letters_ = 0;
    if (tx_open_) {
        co_await discard_in_flight();
        // A BEGIN still pending never reached the server: nothing to roll back there.
        if (!begin_pending_) co_await rollback_transaction();
        begin_pending_ = false;
        tx_open_ = false;
    }
}

awaitable<Lsn> TargetWriter::flush_lsn() {
    require_commit_read("a query");
    auto r = co_await target_.query("SELECT pg_current_wal_flush_lsn()::text");
    co_return Lsn::parse_or_throw(r.get(0, 0));
}

}  // namespace authsync::engine
