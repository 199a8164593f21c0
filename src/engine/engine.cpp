#include "authsync/engine/engine.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <deque>
#include <map>
#include <random>
#include <unordered_map>

#include "authsync/apply/batch.hpp"
#include "authsync/core/sql.hpp"
#include "authsync/core/utf8.hpp"
#include "authsync/engine/backfill.hpp"
#include "authsync/engine/provisioning.hpp"
#include "authsync/apply/composite.hpp"
#include "authsync/mapping/composite.hpp"
#include "authsync/mapping/mapper.hpp"
#include "authsync/pg/async_connection.hpp"
#include "authsync/pgoutput/decoder.hpp"
#include "authsync/pgoutput/relation_cache.hpp"
#include "authsync/version.hpp"
#include "authsync/wire/replication_message.hpp"

namespace authsync::engine {

using asio::awaitable;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {

// Prefix of the heartbeat messages authsync emits on the provider (content: the slot name).
constexpr const char* kHeartbeatPrefix = "authsync_heartbeat";

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
    auto l = spdlog::get(name);
    if (!l) {
        l = spdlog::default_logger()->clone(name);
        spdlog::register_logger(l);
    }
    return l;
}

// A permanent failure that is none of the typed ones (e.g. a lost slot).
class FatalError : public Error {
public:
    using Error::Error;
};

}  // namespace

// One connected run of the engine. See engine.hpp.
class Session {
public:
    Session(const config::Config& config, SessionOptions options, EngineStatus& status,
            asio::any_io_executor ex)
        : config_(config),
          options_(options),
          status_(status),
          source_(ex),
          replication_(ex),
          target_(ex),
          status_timer_(ex),
          monitor_timer_(ex),
          durability_timer_(ex),
          log_(logger("engine")) {}

    awaitable<void> run();

    void request_stop() {
        stop_requested_ = true;
        replication_.cancel();
        status_timer_.cancel();
        monitor_timer_.cancel();
        durability_timer_.cancel();
    }
    // The stop grace period is over (e.g. the target is blocked): drop the connections. An
    // uncommitted target transaction rolls back with them; the checkpoint has not moved.
    void abort() {
        stop_requested_ = true;
        status_timer_.cancel();
        monitor_timer_.cancel();
        durability_timer_.cancel();
        replication_.close();
        target_.close();
        source_.close();
    }
    bool reached_streaming() const { return reached_streaming_; }
    // The session did what it was started for (e.g. a resync's copy) and need not run again.
    bool finished() const { return finished_; }

private:
    awaitable<void> prepare();
    awaitable<void> stream();
    awaitable<void> handle_xlog(const wire::XLogData& x);
    awaitable<void> handle_change(const pgoutput::Message& m);
    awaitable<void> flush_chunk();
    awaitable<void> settle();
    awaitable<void> discard_in_flight();
    awaitable<void> execute(const apply::Statement& st);
    void handle_result(const apply::Statement& st, const pg::Result& r);
    void recompute_statements(std::vector<apply::Statement>& out);
    awaitable<void> apply_one_by_one(const apply::Statement& st);
    awaitable<void> record_dead_letter(pg::Params params);
    awaitable<void> apply_batch();
    awaitable<void> rollback();
    awaitable<void> commit();
    awaitable<void> commit_checkpoint(std::optional<Lsn> end_lsn,
                                      std::optional<PgTimestamp> commit_time);
    void defer(std::string_view sql);
    std::string take_deferred();
    awaitable<Lsn> target_flush_lsn();
    awaitable<pg::Result> target_query(std::string sql);
    awaitable<void> target_sync();
    void advance_durable(Lsn target_flush);
    awaitable<void> check_durable();
    void arm_durability_wakeup();
    awaitable<void> wait_durable_at_stop();
    awaitable<void> send_status(bool reply_requested);
    awaitable<void> status_loop();
    awaitable<void> monitor_loop();
    awaitable<void> check_slot_health();
    awaitable<std::optional<pg::CopyBuffer>> next_copy_data();
    bool more_data_waiting();
    bool idle() const {
        return !in_transaction_ && batch_.empty() && mirror_batch_.empty() && !target_tx_open_;
    }
    bool batch_full() const {
        return batch_.rows() + mirror_batch_.rows() >= config_.apply.batch_max_rows ||
               batch_.bytes() + mirror_batch_.bytes() >= config_.apply.batch_max_bytes;
    }
    const mapping::BoundMirror* mirror_for(pgoutput::RelationId id) const;
    const mapping::BoundMapping* mapping_for(pgoutput::RelationId id) const;
    void bind_relation(const pgoutput::Relation& rel);

    // A copy: composite mappings' lookups are resolved into it at start.
    config::Config config_;
    SessionOptions options_;
    EngineStatus& status_;
    pg::AsyncConnection source_;       // normal connection to the provider
    pg::AsyncConnection replication_;  // replication=database connection
    pg::AsyncConnection target_;
    asio::steady_timer status_timer_;
    asio::steady_timer monitor_timer_;
    asio::steady_timer durability_timer_;  // wakes the stream to see whether WAL got flushed
    bool durability_armed_ = false;
    bool durability_wakeup_ = false;
    std::shared_ptr<spdlog::logger> log_;

    pgoutput::Decoder decoder_;
    pgoutput::RelationCache relations_;
    std::unordered_map<pgoutput::RelationId, mapping::BoundMapping> bound_;
    apply::Batch batch_;
    // Composite mappings: mirrored tables' changes, and the target rows they affect (by target
    // table), recomputed before the target transaction commits.
    std::unordered_map<pgoutput::RelationId, mapping::BoundMirror> mirrors_;
    apply::MirrorBatch mirror_batch_;
    std::map<std::string, apply::AffectedKeys> affected_;
    // The last statement sent to the target, executing there while the stream goes on; it
    // keeps its per-change values for a one-by-one retry. settle() before any other query.
    std::optional<apply::Statement> in_flight_;
    std::string in_flight_savepoint_;  // the savepoint taken just before in_flight_
    std::uint64_t savepoint_seq_ = 0;
    std::optional<pg::CopyBuffer> lookahead_;

    Lsn checkpoint_;        // end_lsn durable in the target at start
    Lsn committed_lsn_;     // end_lsn of the last source transaction committed in the target
    Lsn durable_lsn_;       // ... and also flushed to the target's WAL
    Lsn acked_lsn_;         // what we report as flushed (durable, or idle-acknowledged)
    // Committed but maybe not yet flushed: (target WAL position after the COMMIT, source
    // end_lsn), oldest first. An entry becomes durable when the target's flush LSN reaches it.
    struct Unflushed {
        Lsn target_lsn;
        Lsn source_end_lsn;
    };
    std::deque<Unflushed> unflushed_;
    std::uint64_t wal_block_size_ = 8192;  // the target's, read at start
    Lsn received_lsn_;      // end_lsn of the last Commit received
    Clock::time_point last_idle_record_;  // the last idle keepalive written as the checkpoint
    Lsn pending_end_lsn_;   // end_lsn of the last Commit in the batch
    PgTimestamp pending_commit_time_;
    std::size_t pending_txns_ = 0;
    Clock::time_point batch_started_;
    bool in_transaction_ = false;  // between Begin and Commit
    bool skipping_ = false;        // transaction at or below the checkpoint
    PgTimestamp txn_commit_time_;
    bool target_tx_open_ = false;
    // Target statements whose result nobody waits for (BEGIN, RELEASE SAVEPOINT), held back
    // to go in front of the next simple query: a batch then costs two round trips.
    std::string deferred_;
    bool stop_requested_ = false;
    bool streaming_ = false;
    bool reached_streaming_ = false;
    bool finished_ = false;
    // Rows counted per mapping since the last apply (moved to the status when it commits).
    std::map<std::string, status::MappingRows> pending_rows_;
    // Commit time of the newest heartbeat transaction in the batch.
    std::optional<PgTimestamp> pending_heartbeat_;
    bool txn_has_heartbeat_ = false;
    Lsn txn_final_lsn_;  // commit LSN of the source transaction being received
    std::uint64_t pending_dead_letters_ = 0;
};

awaitable<void> Session::run() {
    status_.state = State::Starting;
    co_await prepare();
    if (stop_requested_ || finished_) co_return;
    auto ex = co_await asio::this_coro::executor;
    streaming_ = true;
    auto report = [log = log_](const char* what) {
        return [log, what](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& err) {
                log->warn("{} stopped: {}", what, err.what());
            }
        };
    };
    asio::co_spawn(ex, status_loop(), report("status updates"));
    asio::co_spawn(ex, monitor_loop(), report("provider monitor"));
    try {
        co_await stream();
    } catch (...) {
        streaming_ = false;
        status_timer_.cancel();
        monitor_timer_.cancel();
        throw;
    }
    streaming_ = false;
    status_timer_.cancel();
    monitor_timer_.cancel();
}

awaitable<void> Session::prepare() {
    const auto& src = config_.source;
    // Target first: it holds the checkpoint, and the advisory lock that makes this instance
    // the only writer for the slot.
    co_await target_.connect(config_.target.dsn, "authsync");
    // raw_json is rewritten whole on every change: lz4 compresses a large one several times
    // faster than the default pglz (readers need nothing). Servers built without lz4 refuse.
    try {
        co_await target_.query("SET default_toast_compression = lz4");
    } catch (const pg::PgError& e) {
        if (e.is_connection_failure()) throw;
        log_->debug("target keeps its default_toast_compression: {}", e.what());
    }
    const auto lock_key = "authsync:slot:" + src.slot;
    bool waiting_logged = false;
    for (;;) {
        auto r = co_await target_.query_params("SELECT pg_try_advisory_lock(hashtext($1))",
                                               pg::params(lock_key));
        if (r.get(0, 0) == "t") break;
        if (!waiting_logged) {
            log_->info("another instance holds slot {}; waiting to take over", src.slot);
            waiting_logged = true;
        }
        status_.state = State::Waiting;
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::seconds(1));
        co_await t.async_wait(use_awaitable);
        if (stop_requested_) co_return;
    }
    // Mirrors that are missing or shaped differently from their preset (a preset added to a
    // running deployment, a dropped mirror, a newer preset) hold nothing to recompute from:
    // only a new copy fills them. CREATE ... IF NOT EXISTS below would make them empty.
    const auto unusable_mirrors = co_await inspect_mirrors(target_, config_);
    co_await ensure_target_schema(target_, config_);
    auto checkpoint = co_await read_checkpoint(target_, src.slot);
    if (checkpoint) checkpoint_ = checkpoint->end_lsn;
    if (checkpoint && !options_.resync && !unusable_mirrors.empty()) {
        throw FatalError(fmt::format("{}: the mirrors must be copied from the provider again; run "
                                     "`authsync resync`",
                                     unusable_mirrors.front()));
    }

    co_await source_.connect(src.dsn, "authsync");
    try {
        co_await resolve_lookups(source_, config_);
    } catch (const LookupError& e) {
        // A configuration problem: reconnecting would find the same.
        throw FatalError(e.what());
    }
    // Mirrors copied for another scope (another project, realm or table) would keep that
    // scope's rows and miss this one's: only a new copy (below, or `resync`) may go on.
    std::optional<std::string> scope_changed;
    if (checkpoint) {
        for (const auto& composite : config_.composites) {
            auto r = co_await target_.query_params(
                "SELECT scope FROM authsync.preset_scope WHERE slot = $1 AND preset = $2",
                pg::params(src.slot, composite.preset));
            const std::string now = composite.scope();
            if (r.rows() == 0 || r.get(0, 0) != now) {
                std::string was = "no copy";
                if (r.rows() > 0) was = std::string(r.get(0, 0));
                scope_changed = fmt::format("preset {}'s mirrors were copied for [{}], the "
                                            "config now says [{}]: run `authsync resync`",
                                            composite.preset, was, now);
            }
        }
    }
    if (!co_await publication_exists(source_, src.publication)) {
        if (!src.create_publication) {
            throw FatalError(fmt::format("publication \"{}\" does not exist on the source (run "
                                         "`authsync init`, or set source.create_publication)",
                                         src.publication));
        }
        auto notes = co_await create_publication(source_, config_);
        log_->info("created publication {}", src.publication);
        for (const auto& note : notes) log_->warn("{}", note);
    }
    if (!config_.composites.empty()) {
        // E.g. a publication made for another project would stream the wrong users.
        auto problems = co_await check_publication_scope(source_, config_);
        if (!problems.empty()) {
            throw FatalError(fmt::format("{} ({})", problems.front().what, problems.front().hint));
        }
    }
    {
        // A mapped table left out of an existing publication would never stream: say so now.
        std::vector<std::string> tables;
        for (const auto& m : config_.mappings) tables.push_back(m.source_name());
        for (const auto& c : config_.composites) {
            for (const auto& s : c.sources) tables.push_back(s.source_name());
        }
        auto r = co_await source_.query_params(
            "SELECT t FROM unnest($1::text[]) AS t WHERE t NOT IN (SELECT schemaname || '.' || "
            "tablename FROM pg_publication_tables WHERE pubname = $2)",
            pg::params(apply::text_array_literal(tables), src.publication));
        if (r.rows() > 0) {
            throw FatalError(fmt::format(
                "publication \"{}\" does not include {} (mapped in the config): its changes would "
                "never arrive; add it with ALTER PUBLICATION, or drop the publication so that "
                "authsync creates it for the config's tables",
                src.publication, r.get(0, 0)));
        }
    }
    auto slot = co_await find_slot(source_, src.slot);
    if (slot && slot->plugin != "pgoutput") {
        throw FatalError(fmt::format("slot {} uses plugin {}, authsync needs pgoutput", src.slot,
                                     slot->plugin));
    }
    // A slot that lost WAL, or vanished while the target has a checkpoint, cannot continue:
    // changes since the checkpoint are gone from it. Only a fresh copy repairs that.
    const bool lost = (checkpoint && !slot) || (slot && slot->wal_status == "lost");
    bool resync = options_.resync;
    if (lost && !resync) {
        std::string what;
        if (slot) {
            what = fmt::format("slot {} is lost (the provider removed WAL it still needed)",
                               src.slot);
        } else {
            what = fmt::format("slot {} does not exist on the source, but the target has a "
                               "checkpoint at {}",
                               src.slot, checkpoint->end_lsn.to_string());
        }
        if (src.on_slot_lost != config::OnSlotLost::Resync) {
            throw FatalError(what + ": changes made since then are lost to this slot; run "
                                    "`authsync resync` to rebuild the slot and copy the users "
                                    "again");
        }
        log_->error("{}; resyncing (source.on_slot_lost: resync)", what);
        resync = true;
    }
    if (checkpoint && slot && !resync) {
        // E.g. a target restored from a backup, or branched from an earlier point in time:
        // streaming from its checkpoint would silently skip what the slot no longer holds.
        if (auto ahead = slot_ahead_of_checkpoint(src.slot, *slot, *checkpoint)) {
            if (src.on_slot_lost != config::OnSlotLost::Resync) throw FatalError(*ahead);
            log_->error("{}; resyncing (source.on_slot_lost: resync)", *ahead);
            resync = true;
        }
    }
    const bool backfill = resync || (!checkpoint && src.snapshot == config::Snapshot::Initial);
    if (scope_changed && !backfill) throw FatalError(*scope_changed);
    if (backfill && slot) {
        // The copy must see exactly the snapshot the slot starts from: only a slot created now
        // gives one. (A slot left by `init` or by an interrupted copy is simply made again.)
        if (slot->active) {
            throw pg::PgError(fmt::format("slot {} is active in another process", src.slot),
                              "55006");
        }
        co_await source_.query_params("SELECT pg_drop_replication_slot($1)", pg::params(src.slot));
        log_->info("dropped slot {} to recreate it with a snapshot for the initial copy",
                   src.slot);
        slot.reset();
        checkpoint_ = Lsn{};
    }
    if (!slot) {
        if (!src.create_slot && !resync) {
            throw FatalError(fmt::format("slot {} does not exist on the source (run `authsync "
                                         "init`, or set source.create_slot)",
                                         src.slot));
        }
        if (backfill) {
            co_await replication_.connect(src.dsn, "authsync", true);
            auto created = co_await replication_.query(
                "CREATE_REPLICATION_SLOT " + quote_identifier(src.slot) +
                " LOGICAL pgoutput (SNAPSHOT 'export')");
            const auto consistent_point = Lsn::parse_or_throw(created.get(0, 1));
            const std::string snapshot_name(created.get(0, 2));
            log_->info("created slot {} at {}; copying existing users", src.slot,
                       consistent_point.to_string());
            co_await run_backfill(source_, target_, config_, snapshot_name, consistent_point,
                                  status_);
            checkpoint_ = consistent_point;
        } else {
            co_await create_slot(source_, src.slot);
            log_->info("created slot {}", src.slot);
        }
    }
    // The checkpoint may have been committed asynchronously by a session that died before
    // the target flushed it: it counts as durable only once the target's WAL flush passes
    // the target's current insert position, like any commit of this session. Until then only
    // what the slot already holds as confirmed is reported (nothing for a slot made above).
    committed_lsn_ = received_lsn_ = checkpoint_;
    durable_lsn_ = acked_lsn_ = Lsn{};
    if (slot && slot->confirmed_flush) {
        durable_lsn_ = acked_lsn_ = std::min(*slot->confirmed_flush, checkpoint_);
    }
    status_.applied_lsn = checkpoint_;
    status_.flushed_lsn = acked_lsn_;
    {
        auto r = co_await target_.query(
            "SELECT current_setting('wal_block_size')::bigint, "
            "pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text");
        wal_block_size_ = std::stoull(std::string(r.get(0, 0)));
        if (wal_block_size_ == 0) throw pg::PgError("the target reports wal_block_size 0");
        if (checkpoint_ > acked_lsn_) {
            unflushed_.push_back(Unflushed{
                durable_point(Lsn::parse_or_throw(r.get(0, 1)), wal_block_size_), checkpoint_});
        }
        advance_durable(Lsn::parse_or_throw(r.get(0, 2)));
    }
    // Set whatever the target's default: flush reporting follows the target's WAL flush LSN.
    std::string sync_commit = "SET synchronous_commit = off";
    if (config_.apply.synchronous_commit) sync_commit = "SET synchronous_commit = on";
    co_await target_.query(sync_commit);
    if (options_.stop_after_backfill) {
        finished_ = true;
        co_return;
    }
    // source_ stays open: the monitor emits heartbeats and reads slot health on it.

    // Output functions run in the walsender: the replication connection fixes their settings.
    if (!replication_.is_open()) co_await replication_.connect(src.dsn, "authsync", true);
    auto ident = co_await replication_.query("IDENTIFY_SYSTEM");
    log_->info("connected: system {} timeline {} wal {}", ident.get(0, 0), ident.get(0, 1),
               ident.get(0, 2));
    const auto command = fmt::format(
        "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {}, "
        "messages 'true')",
        quote_identifier(src.slot), checkpoint_.to_string(),
        quote_literal(quote_identifier(src.publication)));
    co_await replication_.start_copy_both(command);
    status_.state = State::Streaming;
    reached_streaming_ = true;
    log_->info("streaming slot={} from lsn={}", src.slot, checkpoint_.to_string());
}

awaitable<std::optional<pg::CopyBuffer>> Session::next_copy_data() {
    if (lookahead_) {
        auto b = std::move(lookahead_);
        lookahead_.reset();
        co_return b;
    }
    co_return co_await replication_.read_copy_data();
}

bool Session::more_data_waiting() {
    if (lookahead_) return true;
    lookahead_ = replication_.try_read_copy_data();
    return lookahead_.has_value();
}

awaitable<void> Session::stream() {
    for (;;) {
        // Whole transactions are waiting in the batch and nothing more has arrived: apply
        // them now, so that at low load every transaction is applied as soon as it arrives.
        if (pending_txns_ > 0 && !in_transaction_ && !more_data_waiting()) co_await apply_batch();
        if (!unflushed_.empty() && !lookahead_) arm_durability_wakeup();
        std::optional<pg::CopyBuffer> data;
        try {
            data = co_await next_copy_data();
        } catch (const boost::system::system_error& e) {
            if (e.code() != asio::error::operation_aborted) throw;
        }
        if (stop_requested_) break;
        if (!data && durability_wakeup_) {
            durability_wakeup_ = false;
            co_await check_durable();
            continue;
        }
        if (!data) {
            throw pg::PgError("the provider ended the replication stream");
        }
        auto frame = wire::decode_server_message(data->bytes());
        if (auto* x = std::get_if<wire::XLogData>(&frame)) {
            co_await handle_xlog(*x);
        } else {
            const auto& k = std::get<wire::PrimaryKeepalive>(frame);
            status_.provider_wal_lsn = std::max(status_.provider_wal_lsn, k.wal_end);
            if (idle() && !lookahead_ && unflushed_.empty() && k.wal_end > committed_lsn_ &&
                Clock::now() - last_idle_record_ >= config_.source.status_interval) {
                // Everything received is applied and flushed: what the provider sent up to its
                // WAL end holds nothing more for us. It becomes the checkpoint first, and is
                // acknowledged (the slot advances) once that is durable: the slot is then
                // never ahead of the target's checkpoint (slot_ahead_of_checkpoint).
                last_idle_record_ = Clock::now();
                defer("BEGIN");
                target_tx_open_ = true;
                co_await commit_checkpoint(k.wal_end, std::nullopt);
            }
            if (k.reply_requested) co_await send_status(false);
        }
    }
    // Clean stop: a whole batch commits, a half-received transaction rolls back.
    status_.state = State::Stopping;
    if (in_transaction_) {
        co_await rollback();
    } else if (!idle() || pending_txns_ > 0) {
        co_await apply_batch();
    }
    co_await wait_durable_at_stop();
    co_await send_status(false);
    log_->info("stopped at lsn={}", acked_lsn_.to_string());
}

const mapping::BoundMapping* Session::mapping_for(pgoutput::RelationId id) const {
    auto it = bound_.find(id);
    return it == bound_.end() ? nullptr : &it->second;
}

const mapping::BoundMirror* Session::mirror_for(pgoutput::RelationId id) const {
    auto it = mirrors_.find(id);
    return it == mirrors_.end() ? nullptr : &it->second;
}

void Session::bind_relation(const pgoutput::Relation& rel) {
    bound_.erase(rel.relation_id);
    mirrors_.erase(rel.relation_id);
    for (const auto& rule : config_.mappings) {
        if (rule.source_schema == rel.namespace_name && rule.source_table == rel.relation_name) {
            bound_.emplace(rel.relation_id, mapping::BoundMapping::bind(rule, rel));
            return;
        }
    }
    for (const auto& composite : config_.composites) {
        for (const auto& source : composite.sources) {
            if (source.source_schema == rel.namespace_name &&
                source.source_table == rel.relation_name) {
                mirrors_.emplace(rel.relation_id, mapping::BoundMirror::bind(source, rel));
                return;
            }
        }
    }
}

awaitable<void> Session::handle_xlog(const wire::XLogData& x) {
    status_.provider_wal_lsn = std::max(status_.provider_wal_lsn, x.wal_end);
    auto message = decoder_.decode(x.payload);
    if (auto* b = std::get_if<pgoutput::Begin>(&message)) {
        if (in_transaction_) throw ProtocolError("Begin message inside a transaction");
        in_transaction_ = true;
        txn_commit_time_ = b->commit_time;
        txn_final_lsn_ = b->final_lsn;
        txn_has_heartbeat_ = false;
        // Transactions that committed before the checkpoint are already in the target.
        skipping_ = b->final_lsn < checkpoint_;
        if (!skipping_ && !status_.oldest_pending_commit_time) {
            status_.oldest_pending_commit_time = b->commit_time;
        }
        co_return;
    }
    if (auto* c = std::get_if<pgoutput::Commit>(&message)) {
        if (!in_transaction_) throw ProtocolError("Commit message outside a transaction");
        in_transaction_ = false;
        received_lsn_ = std::max(received_lsn_, c->end_lsn);
        status_.received_lsn = received_lsn_;
        if (skipping_) {
            skipping_ = false;
            co_return;
        }
        if (pending_txns_ == 0) batch_started_ = Clock::now();
        if (txn_has_heartbeat_) pending_heartbeat_ = c->commit_time;
        pending_end_lsn_ = c->end_lsn;
        pending_commit_time_ = c->commit_time;
        ++pending_txns_;
        // A full or old batch goes now; otherwise the stream loop applies it as soon as no
        // more data is waiting.
        const auto& a = config_.apply;
        const bool full = batch_full();
        const bool old = Clock::now() - batch_started_ >= a.batch_max_delay;
        if (full || old || stop_requested_) co_await apply_batch();
        co_return;
    }
    if (auto* r = std::get_if<pgoutput::Relation>(&message)) {
        relations_.apply(*r);
        bind_relation(*r);
        co_return;
    }
    if (auto* t = std::get_if<pgoutput::Type>(&message)) {
        relations_.apply(*t);
        co_return;
    }
    if (auto* lm = std::get_if<pgoutput::LogicalMessage>(&message)) {
        // Our own heartbeat, inside a transaction: its apply gives the end-to-end latency.
        if (lm->transactional && in_transaction_ && lm->prefix == kHeartbeatPrefix &&
            lm->content == config_.source.slot) {
            txn_has_heartbeat_ = true;
        }
        co_return;
    }
    if (std::holds_alternative<pgoutput::Origin>(message)) co_return;
    if (!in_transaction_) {
        throw ProtocolError(fmt::format("{} message outside a transaction",
                                        pgoutput::message_name(message)));
    }
    if (skipping_) co_return;
    co_await handle_change(message);
}

awaitable<void> Session::handle_change(const pgoutput::Message& message) {
    if (auto* ins = std::get_if<pgoutput::Insert>(&message)) {
        const auto& rel = relations_.get(ins->relation_id, "Insert");
        pgoutput::RelationCache::check_tuple(rel, ins->new_tuple, "Insert");
        if (const auto* m = mapping_for(ins->relation_id)) {
            batch_.upsert(m->rule(), m->map_new(ins->new_tuple, nullptr), txn_commit_time_);
            ++pending_rows_[m->rule().source_name()].upserts;
        } else if (const auto* mirror = mirror_for(ins->relation_id)) {
            mirror_batch_.upsert(*mirror, mirror->map_new(ins->new_tuple, nullptr),
                                 txn_commit_time_);
            ++pending_rows_[mirror->source().source_name()].upserts;
        }
    } else if (auto* upd = std::get_if<pgoutput::Update>(&message)) {
        const auto& rel = relations_.get(upd->relation_id, "Update");
        pgoutput::RelationCache::check_tuple(rel, upd->new_tuple, "Update");
        if (upd->old_kind != pgoutput::OldTupleKind::None) {
            pgoutput::RelationCache::check_tuple(rel, upd->old_tuple, "Update");
        }
        if (const auto* m = mapping_for(upd->relation_id)) {
            const bool has_old = upd->old_kind != pgoutput::OldTupleKind::None;
            auto image = m->map_new(upd->new_tuple, has_old ? &upd->old_tuple : nullptr);
            if (has_old) {
                auto old_key = m->key_of_old(upd->old_tuple);
                // A key change moves the user: the old id goes by the delete policy.
                if (old_key != image.key) {
                    batch_.remove(m->rule(), old_key, txn_commit_time_);
                    ++pending_rows_[m->rule().source_name()].deletes;
                }
            }
            batch_.upsert(m->rule(), std::move(image), txn_commit_time_);
            ++pending_rows_[m->rule().source_name()].upserts;
        } else if (const auto* mirror = mirror_for(upd->relation_id)) {
            const bool has_old = upd->old_kind != pgoutput::OldTupleKind::None;
            auto row = mirror->map_new(upd->new_tuple, has_old ? &upd->old_tuple : nullptr);
            if (has_old) {
                auto old_key = mirror->key_of_old(upd->old_tuple);
                if (old_key != mirror->key_of(row)) {
                    mirror_batch_.remove(*mirror, std::move(old_key), txn_commit_time_);
                    ++pending_rows_[mirror->source().source_name()].deletes;
                }
            }
            mirror_batch_.upsert(*mirror, std::move(row), txn_commit_time_);
            ++pending_rows_[mirror->source().source_name()].upserts;
        }
    } else if (auto* del = std::get_if<pgoutput::Delete>(&message)) {
        const auto& rel = relations_.get(del->relation_id, "Delete");
        pgoutput::RelationCache::check_tuple(rel, del->old_tuple, "Delete");
        if (const auto* m = mapping_for(del->relation_id)) {
            batch_.remove(m->rule(), m->key_of_old(del->old_tuple), txn_commit_time_);
            ++pending_rows_[m->rule().source_name()].deletes;
        } else if (const auto* mirror = mirror_for(del->relation_id)) {
            mirror_batch_.remove(*mirror, mirror->key_of_old(del->old_tuple), txn_commit_time_);
            ++pending_rows_[mirror->source().source_name()].deletes;
        }
    } else if (auto* tr = std::get_if<pgoutput::Truncate>(&message)) {
        for (auto id : tr->relation_ids) {
            relations_.get(id, "Truncate");
            if (const auto* m = mapping_for(id)) {
                // Order matters here: what came before the TRUNCATE goes in first.
                co_await flush_chunk();
                co_await settle();
                co_await target_sync();
                auto st = apply::truncate_statement(m->rule(), txn_commit_time_);
                co_await target_.query_params(st.sql, st.params);
                log_->info("truncate of {} applied to {}", m->rule().source_name(),
                           m->rule().target_name());
            } else if (const auto* mirror = mirror_for(id)) {
                // The mirror empties now; what it affected is recomputed with the batch.
                co_await flush_chunk();
                co_await settle();
                auto truncate = apply::mirror_truncate_statement(mirror->source(),
                                                                 txn_commit_time_);
                co_await execute(truncate);
                log_->info("truncate of {} applied to its mirror {}",
                           mirror->source().source_name(), mirror->source().mirror_name());
            }
        }
    } else {
        throw ProtocolError(fmt::format("unexpected {} message (authsync asks for protocol 1 "
                                        "without streaming or two-phase)",
                                        pgoutput::message_name(message)));
    }
    // Bounded memory for transactions of any size: a full batch goes into the open target
    // transaction now; it commits with the source transaction's Commit.
    if (batch_full()) co_await flush_chunk();
}

namespace {

// Statements with up to this many bytes of values go inline (see flush_chunk).
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

awaitable<void> Session::execute(const apply::Statement& st) {
    co_await target_sync();
    auto r = co_await target_.query_params(st.sql, st.params);
    handle_result(st, r);
}

void Session::handle_result(const apply::Statement& st, const pg::Result& r) {
    if (st.kind == apply::Statement::Kind::MirrorUpsert ||
        st.kind == apply::Statement::Kind::MirrorDelete) {
        // (target, key, Unix microseconds of the change) per affected row.
        for (int i = 0; i < r.rows(); ++i) {
            const auto target = r.get(i, 0);
            if (target == apply::kMissingMirrorRow) {
                log_->warn("a row of {} with key {} was updated with unchanged TOASTed columns "
                           "but is not in its mirror; it is left out until it changes again "
                           "(run `authsync resync` to copy it)",
                           st.mappings.empty() ? std::string() : st.mappings.front(),
                           r.get(i, 1));
                continue;
            }
            const std::int64_t at = std::stoll(std::string(r.get(i, 2)));
            auto& keys = affected_[std::string(target)];
            auto [it, inserted] = keys.try_emplace(std::string(r.get(i, 1)), at);
            if (!inserted) it->second = std::max(it->second, at);
        }
        return;
    }
    if (st.kind == apply::Statement::Kind::Recompute) {
        // (target, upserted, removed): a soft-deleted user or a removed member is a delete.
        for (int i = 0; i < r.rows(); ++i) {
            auto& rows = pending_rows_[std::string(r.get(i, 0))];
            rows.upserts += std::stoull(std::string(r.get(i, 1)));
            rows.deletes += std::stoull(std::string(r.get(i, 2)));
        }
        return;
    }
    if (st.kind == apply::Statement::Kind::UpsertPartial) {
        for (int i = 0; i < r.rows(); ++i) {
            if (r.get(i, 1) == "t") {
                log_->warn("user {} was updated with unchanged TOASTed columns but was not in "
                           "the target; those keys are missing from its raw_json until they "
                           "change (run `authsync resync` to copy them)",
                           r.get(i, 0));
            }
        }
    }
}

awaitable<void> Session::flush_chunk() {
    if (!target_tx_open_) {
        defer("BEGIN");
        target_tx_open_ = true;
    }
    if (batch_.empty() && mirror_batch_.empty() && affected_.empty()) co_return;
    auto statements = batch_.statements();
    batch_.clear();
    {
        auto mirror_statements = mirror_batch_.statements();
        mirror_batch_.clear();
        for (auto& st : mirror_statements) statements.push_back(std::move(st));
    }
    // Composite targets are recomputed once their mirrors' statements have said what they
    // affect: a second pass, in the same transaction.
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) {
        co_await settle();
        statements.clear();
        recompute_statements(statements);
      }
      for (auto& st : statements) {
        co_await settle();
        // A savepoint of its own per statement: when the target rejects a change, find which
        // one, and stop naming its key (apply.on_error: stop) or set it aside (dead_letter).
        // Its own name, so that a rollback can only ever reach back to this statement's start
        // (see settle()).
        in_flight_savepoint_ = fmt::format("authsync_statement_{}", ++savepoint_seq_);
        if (inline_safe(st)) {
            // Small (low load): one simple query with what was deferred, the savepoint and
            // the statement, its values as literals. Large: bound parameters, cheaper for the
            // server to read than a long literal.
            std::string sql = take_deferred();
            sql += "SAVEPOINT " + in_flight_savepoint_ + "; ";
            sql += st.inline_sql();
            co_await target_.send_query(std::move(sql));
        } else {
            co_await target_query("SAVEPOINT " + in_flight_savepoint_);
            co_await target_.send_query_params(st.sql, std::move(st.params));
        }
        // The array parameters are on the wire; row_values keeps what a retry needs.
        st.params = {};
        in_flight_ = std::move(st);
      }
    }
}

void Session::recompute_statements(std::vector<apply::Statement>& out) {
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
}

awaitable<void> Session::settle() {
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
            co_await target_query("ROLLBACK TO SAVEPOINT " + savepoint);
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

void Session::defer(std::string_view sql) {
    deferred_ += sql;
    deferred_ += "; ";
}

std::string Session::take_deferred() {
    std::string q = std::move(deferred_);
    deferred_.clear();
    return q;
}

awaitable<pg::Result> Session::target_query(std::string sql) {
    std::string q = take_deferred();
    q += sql;
    co_return co_await target_.query(std::move(q));
}

// Before a query with parameters (which cannot share a message): the deferred statements go
// on their own.
awaitable<void> Session::target_sync() {
    if (deferred_.empty()) co_return;
    co_await target_.query(take_deferred());
}

// Before a rollback: the in-flight statement's result is read and dropped, whatever it is.
awaitable<void> Session::discard_in_flight() {
    if (!in_flight_) co_return;
    in_flight_.reset();
    try {
        co_await target_.result();
    } catch (const pg::PgError&) {
        // The transaction rolls back next either way.
    }
}

awaitable<void> Session::apply_one_by_one(const apply::Statement& st) {
    for (std::size_t i = 0; i < st.rows; ++i) {
        auto one = st.single(i);
        co_await target_query("SAVEPOINT authsync_row");
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
        const auto& mapping = st.mappings.at(i);
        const auto& key = st.keys.at(i);
        // The key identifies the user; the row's values stay out of the message (PII).
        if (config_.apply.on_error == config::OnError::Stop) {
            throw pg::PgError(fmt::format("the target rejected the change to {} key {}: {} "
                                          "(set apply.on_error: dead_letter to set such changes "
                                          "aside and go on)",
                                          mapping, key, failed->what()),
                              failed->sqlstate(), failed->detail(), failed->hint());
        }
        const bool upsert = st.kind != apply::Statement::Kind::SoftDelete &&
                            st.kind != apply::Statement::Kind::HardDelete &&
                            st.kind != apply::Statement::Kind::MirrorDelete;
        // Composite statements carry mirror values or keys, not a raw_json: no payload.
        const bool has_payload = st.kind == apply::Statement::Kind::UpsertFull ||
                                 st.kind == apply::Statement::Kind::UpsertPartial;
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
        // Parameters built before the co_await: GCC 12 destroys temporaries of a conditional
        // expression twice inside a coroutine.
        std::optional<std::string> payload, change_time;
        if (has_payload) payload = one.row_values[0][0];
        if (has_payload && one.row_values[0].size() == 2) change_time = one.row_values[0][1];
        pg::Params params = pg::params(config_.source.slot, txn_final_lsn_.to_string(), mapping,
                                       target, escape_ill_formed_utf8(key),
                                       std::string(upsert ? "upsert" : "delete"), payload,
                                       change_time, failed->server_message(),
                                       failed->sqlstate());
        co_await record_dead_letter(std::move(params));
        ++pending_dead_letters_;
        // what(), not the server's message that the row keeps: it may quote the row's values.
        log_->warn("dead-lettered the change to {} key {}: {}", mapping, key, failed->what());
    }
}

// Params: slot, lsn, mapping, target, key, op, payload, change_time, error, sqlstate. A dead
// letter must always be storable, whatever the change held: jsonb refuses what json accepts
// (\u0000) and no text column takes ill-formed UTF-8. So the payload goes to `payload` under
// a savepoint, and to `payload_text` (ill-formed bytes shown as \xHH) when jsonb refuses it.
awaitable<void> Session::record_dead_letter(pg::Params params) {
    static constexpr const char* kInsert =
        "INSERT INTO authsync.dead_letter (slot, lsn, mapping, target, key, op, {}, "
        "change_time, error, sqlstate) VALUES ($1, $2::pg_lsn, $3, $4, $5, $6, {}, "
        "$8::timestamptz, $9, $10)";
    auto& payload = params.at(6);
    if (!payload || is_valid_utf8(*payload)) {
        co_await target_query("SAVEPOINT authsync_dead_letter");
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
    co_await target_sync();
    co_await target_.query_params(fmt::format(kInsert, "payload_text", "$7"), std::move(params));
}

awaitable<void> Session::apply_batch() {
    const auto started = Clock::now();
    co_await flush_chunk();
    co_await settle();
    co_await commit();
    if (pending_txns_ > 0) {
        status_.last_commit_time = pending_commit_time_;
        status_.last_applied_at = PgTimestamp::now();
        status_.txns_applied += pending_txns_;
        ++status_.batches;
        const double apply_seconds = std::chrono::duration<double>(Clock::now() - started).count();
        status_.batch_apply_seconds.observe(apply_seconds);
        log_->debug("applied {} transactions up to lsn={} in {:.1f} ms", pending_txns_,
                    pending_end_lsn_.to_string(), apply_seconds * 1000);
        if (pending_heartbeat_) {
            const auto us = status_.last_applied_at->micros - pending_heartbeat_->micros;
            const double seconds = us > 0 ? static_cast<double>(us) / 1e6 : 0.0;
            status_.e2e_latency_ms = seconds * 1000.0;
            status_.e2e_latency_seconds.observe(seconds);
        }
        for (const auto& [name, rows] : pending_rows_) {
            auto& total = status_.rows_applied[name];
            total.upserts += rows.upserts;
            total.deletes += rows.deletes;
        }
    }
    status_.dead_letters += pending_dead_letters_;
    pending_dead_letters_ = 0;
    pending_rows_.clear();
    pending_heartbeat_.reset();
    status_.oldest_pending_commit_time.reset();
    pending_txns_ = 0;
}

// Commits the target transaction and records where its WAL ends. With synchronous_commit
// off (or a target that runs so), the commit is visible before it is durable: the batch's
// source end_lsn is reported as flushed only once the target's WAL flush passes that point.
awaitable<void> Session::commit() {
    std::optional<Lsn> end_lsn;
    if (pending_txns_ > 0) end_lsn = pending_end_lsn_;
    co_await commit_checkpoint(end_lsn, pending_commit_time_);
}

// The checkpoint (when given), the COMMIT and the target's WAL positions in one round trip.
awaitable<void> Session::commit_checkpoint(std::optional<Lsn> end_lsn,
                                           std::optional<PgTimestamp> commit_time) {
    std::string sql;
    if (end_lsn) sql = apply::checkpoint_sql(config_.source.slot, *end_lsn, commit_time) + "; ";
    sql += "COMMIT; SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text";
    auto r = co_await target_query(std::move(sql));
    target_tx_open_ = false;
    if (r.rows() != 1) throw pg::PgError("the target did not report its WAL position");
    const auto inserted = Lsn::parse_or_throw(r.get(0, 0));
    const auto flushed = Lsn::parse_or_throw(r.get(0, 1));
    if (end_lsn) {
        committed_lsn_ = *end_lsn;
        status_.applied_lsn = std::max(status_.applied_lsn, committed_lsn_);
        unflushed_.push_back(Unflushed{durable_point(inserted, wal_block_size_), *end_lsn});
    }
    advance_durable(flushed);
}

void Session::advance_durable(Lsn target_flush) {
    while (!unflushed_.empty() && unflushed_.front().target_lsn <= target_flush) {
        durable_lsn_ = unflushed_.front().source_end_lsn;
        unflushed_.pop_front();
    }
    acked_lsn_ = std::max(acked_lsn_, durable_lsn_);
}

awaitable<Lsn> Session::target_flush_lsn() {
    auto r = co_await target_.query("SELECT pg_current_wal_flush_lsn()::text");
    co_return Lsn::parse_or_throw(r.get(0, 0));
}

// Between batches: has the target flushed what it committed? (Inside a transaction the next
// commit will tell.)
awaitable<void> Session::check_durable() {
    if (unflushed_.empty() || target_tx_open_ || in_flight_) co_return;
    const auto before = acked_lsn_;
    advance_durable(co_await target_flush_lsn());
    if (acked_lsn_ > before) co_await send_status(false);
}

// While commits wait for the target's WAL flush (its walwriter does it within
// wal_writer_delay), wake the stream every 100 ms to look, so that the slot advances without
// waiting for the next change or keepalive.
void Session::arm_durability_wakeup() {
    // Once: re-arming on every message would postpone the wakeup for as long as messages
    // (e.g. keepalives) keep coming.
    if (durability_armed_) return;
    durability_armed_ = true;
    durability_timer_.expires_after(std::chrono::milliseconds(100));
    durability_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;  // the session is going away: `this` may be too
        durability_armed_ = false;
        durability_wakeup_ = true;
        replication_.cancel();
    });
}

// A clean stop reports what the target has flushed; a little wait lets its walwriter finish.
awaitable<void> Session::wait_durable_at_stop() {
    durability_timer_.cancel();
    for (int i = 0; i < 20 && !unflushed_.empty() && !target_tx_open_; ++i) {
        advance_durable(co_await target_flush_lsn());
        if (unflushed_.empty()) break;
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
        co_await t.async_wait(use_awaitable);
    }
}

awaitable<void> Session::rollback() {
    batch_.clear();
    mirror_batch_.clear();
    affected_.clear();
    pending_dead_letters_ = 0;
    pending_rows_.clear();
    pending_heartbeat_.reset();
    if (target_tx_open_) {
        co_await discard_in_flight();
        // A BEGIN still deferred never reached the server: nothing to roll back there.
        const bool begun = deferred_.rfind("BEGIN", 0) != 0;
        deferred_.clear();
        if (begun) co_await target_.query("ROLLBACK");
        target_tx_open_ = false;
    }
    pending_txns_ = 0;
}

awaitable<void> Session::send_status(bool reply_requested) {
    if (!replication_.is_open()) co_return;
    wire::StandbyStatusUpdate u;
    u.write = std::max(received_lsn_, acked_lsn_);
    u.flush = acked_lsn_;
    u.apply = acked_lsn_;
    u.send_time = PgTimestamp::now();
    u.reply_requested = reply_requested;
    auto bytes = wire::encode_standby_status_update(u);
    co_await replication_.put_copy_data(bytes);
    status_.flushed_lsn = acked_lsn_;
}

awaitable<void> Session::status_loop() {
    while (streaming_) {
        status_timer_.expires_after(config_.source.status_interval);
        boost::system::error_code ec;
        co_await status_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
        if (!streaming_) break;
        co_await send_status(false);
    }
}

awaitable<void> Session::check_slot_health() {
    auto r = co_await source_.query_params(
        "SELECT wal_status, safe_wal_size, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
        "FROM pg_replication_slots WHERE slot_name = $1",
        pg::params(config_.source.slot));
    auto& h = status_.slot_health;
    h.checked_at = PgTimestamp::now();
    if (r.rows() == 0) {
        h = status::SlotHealth{};
        h.checked_at = PgTimestamp::now();
        co_return;
    }
    auto previous = h.wal_status;
    h.wal_status = r.get_optional(0, 0);
    h.safe_wal_size_bytes.reset();
    h.retained_wal_bytes.reset();
    if (auto v = r.get_optional(0, 1)) h.safe_wal_size_bytes = std::stoll(*v);
    if (auto v = r.get_optional(0, 2)) h.retained_wal_bytes = std::stoull(*v);
    if (h.wal_status != previous && (h.wal_status == "unreserved" || h.wal_status == "lost")) {
        log_->error("slot {} wal_status is {}: the provider {} WAL this slot needs "
                    "(max_slot_wal_keep_size); {}",
                    config_.source.slot, *h.wal_status,
                    *h.wal_status == "lost" ? "has removed" : "may soon remove",
                    *h.wal_status == "lost" ? "run `authsync resync`"
                                            : "catch up, or raise max_slot_wal_keep_size");
    }
}

awaitable<void> Session::monitor_loop() {
    using namespace std::chrono_literals;
    const auto heartbeat_every = config_.source.heartbeat_interval;
    const auto slot_every = std::chrono::milliseconds(5000);
    auto last_heartbeat = Clock::now() - heartbeat_every;
    auto last_slot_check = Clock::now() - slot_every;
    bool warned = false;
    bool heartbeats = heartbeat_every.count() > 0;
    while (streaming_) {
        try {
            if (!source_.is_open()) co_await source_.connect(config_.source.dsn, "authsync");
            if (Clock::now() - last_slot_check >= slot_every) {
                last_slot_check = Clock::now();
                co_await check_slot_health();
            }
            if (heartbeats && Clock::now() - last_heartbeat >= heartbeat_every) {
                last_heartbeat = Clock::now();
                try {
                    co_await source_.query_params(
                        "SELECT pg_logical_emit_message(true, $1, $2)",
                        pg::params(kHeartbeatPrefix, config_.source.slot));
                } catch (const pg::PgError& e) {
                    if (e.sqlstate() != "42501") throw;
                    heartbeats = false;
                    log_->warn("heartbeats disabled: {} (GRANT EXECUTE ON FUNCTION "
                               "pg_logical_emit_message(boolean, text, text) TO the source role "
                               "to measure end-to-end latency)",
                               e.what());
                }
            }
            warned = false;
        } catch (const pg::PgError& e) {
            // Heartbeats and slot health are advisory: the stream goes on without them.
            if (!warned) log_->warn("provider monitor: {}", e.what());
            warned = true;
            if (e.is_connection_failure()) source_.close();
        }
        monitor_timer_.expires_after(std::min<std::chrono::milliseconds>(
            heartbeat_every.count() > 0 ? heartbeat_every : slot_every, 1000ms));
        boost::system::error_code ec;
        co_await monitor_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
    }
}

Supervisor::Supervisor(asio::io_context& io, config::Config config, SessionOptions options)
    : io_(io),
      config_(std::move(config)),
      session_options_(options),
      backoff_timer_(io),
      stop_deadline_(io) {}

Supervisor::~Supervisor() = default;

void Supervisor::request_stop() {
    if (stop_requested_) return;
    stop_requested_ = true;
    logger("engine")->info("stop requested");
    if (session_) session_->request_stop();
    backoff_timer_.cancel();
    stop_deadline_.expires_after(kStopGrace);
    stop_deadline_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || session_ == nullptr) return;
        logger("engine")->warn("batch still in flight after {} s; rolling it back",
                               std::chrono::duration_cast<std::chrono::seconds>(kStopGrace).count());
        session_->abort();
    });
}

status::Snapshot Supervisor::snapshot() const {
    return make_snapshot(status_, config_.source.slot, config_.source.publication,
                         PgTimestamp::now());
}

awaitable<void> Supervisor::sample_lag() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!stop_requested_) {
        auto s = snapshot();
        status_.lag_history.add({s.now.unix_micros() / 1'000'000, s.lag_seconds, s.lag_bytes});
        timer.expires_after(std::chrono::seconds(5));
        boost::system::error_code ec;
        co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
    }
}

awaitable<int> Supervisor::run() {
    auto log = logger("engine");
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex, sample_lag(), asio::detached);
    std::mt19937_64 rng(std::random_device{}());
    auto backoff = config_.reconnect.initial_backoff;
    while (!stop_requested_) {
        Session session(config_, session_options_, status_, ex);
        session_ = &session;
        std::string failure;
        bool transient = false;
        try {
            co_await session.run();
            session_ = nullptr;
            if (stop_requested_ || session.finished()) break;
            // A resync asked for on the command line is done once it has copied.
            session_options_.resync = false;
        } catch (const pg::PgError& e) {
            failure = e.what();
            transient = e.is_connection_failure() || e.is_serialization_failure() ||
                        e.is_object_in_use() || e.sqlstate() == "55P03" || e.sqlstate() == "57014";
        } catch (const boost::system::system_error& e) {
            failure = e.what();
            transient = true;
        } catch (const Error& e) {
            failure = e.what();
        }
        session_ = nullptr;
        if (stop_requested_) break;
        if (failure.empty()) continue;
        ++status_.errors;
        status_.last_error = failure;
        status_.last_error_at = PgTimestamp::now();
        if (!transient) {
            status_.state = State::Failed;
            log->error("{}", failure);
            co_return 1;
        }
        if (session.reached_streaming()) backoff = config_.reconnect.initial_backoff;
        // Full jitter over the upper half of the window: spreads instances that failed
        // together without ever retrying immediately.
        std::uniform_int_distribution<long> jitter(backoff.count() / 2, backoff.count());
        std::chrono::milliseconds wait{jitter(rng)};
        status_.state = State::Reconnecting;
        ++status_.reconnects;
        log->warn("{}; reconnecting in {} ms", failure, wait.count());
        backoff_timer_.expires_after(wait);
        boost::system::error_code ec;
        co_await backoff_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
        backoff = std::min(backoff * 2, config_.reconnect.max_backoff);
    }
    stop_deadline_.cancel();
    status_.state = State::Stopping;
    co_return 0;
}

}  // namespace authsync::engine
