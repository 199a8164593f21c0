#include "authsync/engine/engine.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <random>

#include "authsync/core/sql.hpp"
#include "authsync/engine/backfill.hpp"
#include "authsync/engine/join.hpp"
#include "authsync/engine/log.hpp"
#include "authsync/engine/provisioning.hpp"
#include "authsync/engine/role.hpp"
#include "authsync/engine/target_writer.hpp"
#include "authsync/pg/async_connection.hpp"
#include "authsync/pg/error_class.hpp"
#include "authsync/pgoutput/decoder.hpp"
#include "authsync/pgoutput/relation_cache.hpp"
#include "authsync/pipeline/change_router.hpp"
#include "authsync/pipeline/flush_tracker.hpp"
#include "authsync/pipeline/lanes.hpp"
#include "authsync/wire/replication_message.hpp"
#include "spawned.hpp"

namespace authsync::engine {

using asio::awaitable;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {

// Prefix of the heartbeat messages authsync emits on the provider (content: the slot name).
constexpr const char* kHeartbeatPrefix = "authsync_heartbeat";

// A failure of one target's database (its server gone, a change it refused), named so that the
// supervisor can detach that target alone (fanout.max_target_lag). Its class is its cause's.
class TargetFailure : public Error {
public:
    struct Failed {
        std::string target;
        std::string what;
        // A step unanswered since then, cut off by the stall watchdog (Session::in_target).
        std::optional<Clock::time_point> stalled_since;
    };
    TargetFailure(std::string target, pg::ErrorClass cause, const std::string& what,
                  std::optional<Clock::time_point> stalled_since = std::nullopt)
        : Error(what), cause_(cause), failures_{{std::move(target), what, stalled_since}} {}
    const std::string& target() const { return failures_.front().target; }
    pg::ErrorClass cause() const { return cause_; }
    // Every target found failing alike at once (e.g. the targets of one server that is down),
    // with its message: each has its own clock towards fanout.max_target_lag.
    const std::vector<Failed>& failures() const { return failures_; }
    void add(const TargetFailure& other) { failures_.push_back(other.failures_.front()); }

private:
    pg::ErrorClass cause_;
    std::vector<Failed> failures_;
};

// Runs `tasks` concurrently on this coroutine's executor and waits for all of them; the first
// failure is rethrown once every task has ended (one task: simply awaited).
awaitable<void> in_parallel(std::vector<std::function<awaitable<void>()>> tasks) {
    if (tasks.size() == 1) {
        co_await tasks.front()();
        co_return;
    }
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer done(ex, asio::steady_timer::time_point::max());
    std::size_t left = tasks.size();
    std::exception_ptr first;
    for (auto& task : tasks) {
        asio::co_spawn(ex, task(), [&](std::exception_ptr e) {
            if (e && !first) first = e;
            if (--left == 0) done.cancel();
        });
    }
    while (left > 0) {
        boost::system::error_code ec;
        co_await done.async_wait(asio::redirect_error(use_awaitable, ec));
    }
    if (first) std::rethrow_exception(first);
}

}  // namespace

// One connected run of the engine: the replication stream in, the ChangeRouter's operations
// out to the writers (apply lanes), the FlushTracker's position reported back. See engine.hpp.
class Session : public RoleSession {
public:
    Session(const config::Config& config, SessionOptions options, EngineStatus& status,
            pipeline::TargetHealth& health, const std::optional<Lsn>& ack_hold,
            asio::any_io_executor ex)
        : config_(config),
          options_(options),
          status_(status),
          health_(health),
          ack_hold_(ack_hold),
          source_(ex),
          replication_(ex),
          status_timer_(ex),
          monitor_timer_(ex),
          durability_timer_(ex),
          log_(logger("engine")) {
        for (std::size_t t = 0; t < config_.targets.size(); ++t) {
            auto target = std::make_unique<Target>();
            target->index = t;
            target->config = config_.for_target(t);
            for (std::size_t lane = 0; lane < config_.apply.lanes; ++lane) {
                writers_.push_back(
                    std::make_unique<TargetWriter>(target->config, t, lane, writers_.size(), ex));
                target->lanes.push_back(writers_.back().get());
            }
            targets_.push_back(std::move(target));
        }
    }

    awaitable<void> run() override;

    void request_stop() override {
        stop_requested_ = true;
        replication_.cancel();
        cancel_timers();
    }
    // The stop grace period is over (e.g. the target is blocked): drop the connections. An
    // uncommitted target transaction rolls back with them; the checkpoint has not moved. The
    // target's queries are cancelled first: a COMMIT already queued behind a blocked statement
    // in a pipeline must not run once the block lifts.
    void abort() override {
        stop_requested_ = true;
        cancel_timers();
        replication_.close();
        for (auto& w : writers_) {
            w->connection().cancel_query();
            w->close();
        }
        source_.close();
    }
    bool reached_streaming() const override { return reached_streaming_; }
    // The session did what it was started for (e.g. a resync's copy) and need not run again.
    bool finished() const override { return finished_; }
    // Targets that must join with a copy of their own, alongside the others' stream: the
    // session ended before streaming, so that the next one runs without them meanwhile.
    const std::vector<std::string>& joiners() const override { return joiners_; }

private:
    // Start-up (prepare.cpp's order): target, source, slot, writers, stream.
    // One target database (fan-out: one per configured target) with its own config, router
    // and lanes; its lanes' ids among all writers run from lanes.front()->id().
    struct Target {
        std::size_t index = 0;
        config::Config config;  // config_.for_target(index), lookups resolved at start
        std::optional<pipeline::ChangeRouter> router;  // made once lookups are resolved
        std::vector<TargetWriter*> lanes;              // in writers_; lanes[0] provisions
        std::optional<Checkpoint> checkpoint;          // read at start
        Lsn copied_at;  // its copy's consistent point, when this start copied it
        Clock::time_point last_checkpoint;               // its last checkpoint commit
        std::optional<Clock::time_point> stalled_since;  // cut off by the watchdog (in_target)
        TargetWriter& primary() const { return *lanes.front(); }
        const std::string& name() const { return config.targets.front().name; }
    };
    // "" with one target; "target NAME: " before a message about one of several.
    std::string about(const Target& t) const {
        return targets_.size() == 1 ? std::string() : "target " + t.name() + ": ";
    }
    // `step`, done in target `t`'s database alone: its failure is that target's. Where a target
    // may be detached for its seconds of lag, a step it leaves unanswered that long stalls it:
    // its connections are cut (stall()) and its failure dates from the step's start, so that
    // the others stream on at once instead of waiting behind it.
    template <typename T>
    awaitable<T> in_target(Target& t, awaitable<T> step) {
        std::optional<asio::steady_timer> watchdog;
        // Set when this step ends, however: an expiry already queued then must not act.
        struct EndMark {
            std::shared_ptr<bool> ended = std::make_shared<bool>(false);
            ~EndMark() { *ended = true; }
        } mark;
        if (const auto limit = stall_limit()) {
            watchdog.emplace(co_await asio::this_coro::executor, *limit);
            watchdog->async_wait([this, &t, ended = mark.ended,
                                  started = Clock::now()](const boost::system::error_code& ec) {
                if (!ec && !*ended) stall(t, started);
            });
        }
        try {
            co_return co_await std::move(step);
        } catch (const TargetFailure&) {
            throw;
        } catch (const std::exception& e) {
            if (t.stalled_since) {
                throw TargetFailure(t.name(), pg::ErrorClass::Transient,
                                    about(t) + stalled_message(e.what()), t.stalled_since);
            }
            throw TargetFailure(t.name(), pg::classify(e), about(t) + e.what());
        }
    }
    std::optional<std::chrono::seconds> stall_limit() const {
        if (!detaching()) return std::nullopt;
        return config_.fanout.max_target_lag_seconds;
    }
    void stall(Target& t, Clock::time_point started);
    std::string stalled_message(const std::string& cause) const;
    template <typename T>
    awaitable<T> in_target(std::size_t writer, awaitable<T> step) {
        return in_target(*targets_[writers_[writer]->target()], std::move(step));
    }
    // One target may be left behind while the others stream on (fanout.max_target_lag).
    bool detaching() const {
        return config_.fanout.detaches() && targets_.size() > 1 && !options_.resync &&
               !options_.stop_after_backfill;
    }

    awaitable<void> prepare();
    awaitable<bool> lock_slot(Target& t);
    awaitable<void> inspect_target(Target& t);
    awaitable<void> check_publication();
    awaitable<bool> prepare_slot(std::optional<std::string> scope_changed);
    awaitable<bool> judge_checkpoints(const std::optional<SlotInfo>& slot, bool resync);
    awaitable<std::optional<std::string>> scope_change(Target& t);
    awaitable<void> start_writers(std::optional<Lsn> slot_confirmed_flush);
    awaitable<void> copy_joining_target(Target& t);
    awaitable<void> start_streaming();

    awaitable<void> stream();
    awaitable<void> handle_keepalive(const wire::PrimaryKeepalive& k);
    awaitable<void> handle_xlog(const wire::XLogData& x);
    void begin(const pgoutput::Begin& b);
    awaitable<void> commit(const pgoutput::Commit& c);
    awaitable<void> handle_change(const pgoutput::Message& m);
    // What a batch was, for the status once its commit is read.
    struct BatchRecord {
        std::optional<Lsn> end_lsn;  // none: no source transaction (nothing to checkpoint)
        std::optional<PgTimestamp> commit_time;
        std::size_t txns = 0;
        std::optional<PgTimestamp> heartbeat;  // commit time of its newest heartbeat
        std::optional<PgTimestamp> oldest;     // commit time of its oldest transaction
        Clock::time_point started;
        std::vector<TargetWriter*> committing;
    };
    // `chained`: sent behind the batch still executing (may_chain) instead of after it.
    awaitable<void> apply_batch(bool chained = false);
    bool may_chain();
    void batch_applied(const BatchRecord& batch);
    // A batch sent: its outcome, read by finish_batch while the stream goes on.
    struct SentBatch {
        SentBatch(BatchRecord r, const asio::any_io_executor& ex)
            : record(std::move(r)), finished(ex, asio::steady_timer::time_point::max()) {}
        BatchRecord record;
        std::vector<CommitPositions> positions;   // per committing writer
        std::vector<Clock::time_point> answered;  // per committing writer: when it answered
        bool done = false;
        std::exception_ptr error;
        asio::steady_timer finished;  // cancelled when done
        awaitable<void> wait() {
            while (!done) {
                boost::system::error_code ec;
                co_await finished.async_wait(asio::redirect_error(use_awaitable, ec));
            }
        }
    };
    void judge_stragglers(const SentBatch& sent);
    awaitable<void> send_batch(BatchRecord batch, bool all);
    awaitable<void> finish_batch(std::shared_ptr<SentBatch> sent,
                                 std::shared_ptr<SentBatch> before);
    // Takes the outcome of every batch sent (join_oldest: of the oldest).
    awaitable<void> join_batch();
    awaitable<void> join_oldest();
    awaitable<void> abandon_batch();
    awaitable<void> commit_writers(std::optional<Lsn> end_lsn,
                                   std::optional<PgTimestamp> commit_time, bool all);
    awaitable<void> rollback();
    awaitable<void> check_durable();
    void arm_durability_wakeup();
    awaitable<void> wait_durable_at_stop();
    awaitable<void> finish_together();
    awaitable<void> send_status(bool reply_requested);
    awaitable<void> status_loop();
    awaitable<std::optional<pg::CopyBuffer>> next_copy_data();
    bool more_data_waiting();
    bool all_go_whole() const {
        return std::all_of(writers_.begin(), writers_.end(),
                           [](const auto& w) { return w->goes_whole(); });
    }
    awaitable<void> monitor_loop();
    awaitable<void> monitor_once(bool& heartbeats, Clock::time_point& last_heartbeat,
                                 Clock::time_point& last_slot_check);
    awaitable<void> check_slot_health();
    void cancel_timers() {
        status_timer_.cancel();
        monitor_timer_.cancel();
        durability_timer_.cancel();
    }
    TargetWriter& primary() { return targets_.front()->primary(); }
    // Applies target `t`'s WAL flush position to each of its lanes (note_durable() then shows
    // it, once for all the targets of a round).
    void target_flushed(std::size_t t, Lsn flush) {
        for (auto* w : targets_[t]->lanes) tracker_->target_flushed(w->id(), flush);
    }
    // The status's view of what each target holds durably; a target catching up streams once
    // it holds where the stream was when its copy ended.
    void note_durable() {
        for (const auto& t : targets_) {
            auto& shown = status_.targets[t->name()];
            shown.durable_lsn = tracker_->target_durable(t->index);
            auto caught = status_.catch_up_to.find(t->name());
            if (caught == status_.catch_up_to.end() || shown.durable_lsn < caught->second) {
                continue;
            }
            if (shown.state == "catching_up") {
                shown.state = "streaming";
                log_->info("target {} caught up at {}", t->name(), shown.durable_lsn.to_string());
            }
            status_.catch_up_to.erase(caught);
        }
    }
    bool idle() const {
        if (in_transaction_ || pending_txns_ > 0 || sent_batch_) return false;
        for (const auto& w : writers_) {
            if (w->has_work()) return false;
        }
        return true;
    }

    // A copy: composite mappings' lookups are resolved into it at start.
    config::Config config_;
    SessionOptions options_;
    EngineStatus& status_;
    pipeline::TargetHealth& health_;  // the supervisor's: a target's commit ends its failures
    // The supervisor's: while a target copies alongside, the slot is acknowledged no further.
    const std::optional<Lsn>& ack_hold_;
    pg::AsyncConnection source_;       // normal connection to the provider
    pg::AsyncConnection replication_;  // replication=database connection
    asio::steady_timer status_timer_;
    asio::steady_timer monitor_timer_;
    asio::steady_timer durability_timer_;  // wakes the stream to see whether WAL got flushed
    // Expires with the session; callbacks that capture `this` hold a weak reference to it.
    const std::shared_ptr<const bool> alive_ = std::make_shared<const bool>(true);
    bool durability_armed_ = false;
    bool durability_wakeup_ = false;
    std::shared_ptr<spdlog::logger> log_;

    pgoutput::Decoder decoder_;
    pgoutput::RelationCache relations_;
    std::vector<std::unique_ptr<Target>> targets_;
    std::vector<std::unique_ptr<TargetWriter>> writers_;  // every target's lanes, by id
    std::optional<pipeline::FlushTracker> tracker_;
    std::vector<pipeline::Operation> operations_;  // scratch, one change's
    std::optional<pg::CopyBuffer> lookahead_;      // a peek's catch (more_data_waiting)
    Lsn start_lsn_;                                // where streaming starts

    // The source transaction being received.
    bool in_transaction_ = false;  // between Begin and Commit
    Lsn txn_final_lsn_;
    PgTimestamp txn_commit_time_;
    bool txn_has_heartbeat_ = false;
    std::vector<bool> skipping_;  // per writer: the transaction is at or below its checkpoint
    // The batch: whole source transactions received, not yet committed in the target.
    Lsn pending_end_lsn_;  // end_lsn of the last Commit in the batch
    PgTimestamp pending_commit_time_;
    std::size_t pending_txns_ = 0;
    Clock::time_point batch_started_;
    std::optional<PgTimestamp> pending_heartbeat_;  // commit time of its newest heartbeat
    // The batch whose commit was sent and not taken yet (send_batch); the next is received
    // meanwhile.
    std::shared_ptr<SentBatch> sent_batch_;
    // A batch sent behind it (may_chain), taken after it.
    std::shared_ptr<SentBatch> chained_batch_;
    bool reading_stream_ = false;  // the reader waits on the provider
    bool batch_wakeup_ = false;    // ... and was woken by the sent batch's outcome

    bool stop_requested_ = false;
    bool streaming_ = false;
    bool reached_streaming_ = false;
    bool finished_ = false;
    std::vector<std::string> joiners_;
};

awaitable<void> Session::run() {
    status_.state = State::Starting;
    co_await prepare();
    if (stop_requested_ || finished_ || !joiners_.empty()) co_return;
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
    // They use the session: it returns (and is destroyed) only once they have ended.
    Spawned loops(ex);
    loops.spawn(status_loop(), report("status updates"));
    loops.spawn(monitor_loop(), report("provider monitor"));
    std::exception_ptr failure;
    try {
        co_await stream();
    } catch (...) {
        failure = std::current_exception();
    }
    streaming_ = false;
    status_timer_.cancel();
    monitor_timer_.cancel();
    co_await loops.wait();
    if (failure) {
        co_await abandon_batch();
        std::rethrow_exception(failure);
    }
}

awaitable<void> Session::prepare() {
    const auto& src = config_.source;
    // Targets first: each holds its checkpoint, and the advisory lock that makes this instance
    // the only writer for the slot.
    std::optional<TargetFailure> target_down;
    for (auto& t : targets_) {
        try {
            co_await in_target(*t, t->primary().connect());
        } catch (const TargetFailure& f) {
            // Detaching: the others connect too (every target that is down is named, so that
            // the targets of one server detach together), and the provider's WAL position
            // tells how much each holds back (TargetHealth).
            if (!detaching() || f.cause() != pg::ErrorClass::Transient) throw;
            if (target_down) {
                target_down->add(f);
            } else {
                target_down = f;
            }
            continue;
        }
        if (!co_await in_target(*t, lock_slot(*t))) co_return;
    }
    if (target_down) {
        co_await source_.connect(src.dsn, "authsync");
        auto r = co_await source_.query("SELECT pg_current_wal_lsn()");
        status_.provider_wal_lsn = Lsn::parse_or_throw(r.get(0, 0));
        throw *target_down;
    }
    for (auto& t : targets_) co_await in_target(*t, inspect_target(*t));
    // Lookups into config_ (every target's presets: the publication is made from it), then
    // each target's own config.
    co_await connect_and_resolve(source_, config_, "authsync");
    for (auto& t : targets_) {
        // Its lookups resolved, its scope values canonical.
        t->config = config_.for_target(t->index);
        t->router.emplace(t->config.mappings, t->config.composites, config_.apply.lanes);
    }
    std::optional<std::string> scope_changed;
    for (auto& t : targets_) {
        if (auto changed = co_await in_target(*t, scope_change(*t))) {
            scope_changed = about(*t) + *changed;
        }
    }
    co_await check_publication();
    if (!co_await prepare_slot(scope_changed)) co_return;
    co_await start_streaming();
}

// Its schema made, its checkpoint read. Mirrors that are missing or shaped differently from
// their preset (a preset added to a running deployment, a dropped mirror, a newer preset) hold
// nothing to recompute from: only a new copy fills them. CREATE ... IF NOT EXISTS in
// ensure_target_schema would make them empty.
awaitable<void> Session::inspect_target(Target& t) {
    auto& target = t.primary().connection();
    const auto unusable_mirrors = co_await inspect_mirrors(target, t.config);
    co_await ensure_target_schema(target, t.config);
    t.checkpoint = co_await read_checkpoint(target, config_.source.slot);
    if (t.checkpoint && !options_.resync && !unusable_mirrors.empty()) {
        throw FatalError(
            fmt::format("{}{}: the mirrors must be copied from the provider again; run "
                        "`authsync resync`",
                        about(t), unusable_mirrors.front()));
    }
}

// Takes the per-slot advisory lock in target `t`, waiting while another instance holds it;
// false when a stop was asked for meanwhile.
awaitable<bool> Session::lock_slot(Target& t) {
    const auto& slot = config_.source.slot;
    bool waiting_logged = false;
    for (;;) {
        if (co_await try_lock_slot(t.primary().connection(), slot)) co_return true;
        if (!waiting_logged) {
            log_->info("{}another instance holds slot {}; waiting to take over", about(t), slot);
            waiting_logged = true;
        }
        status_.state = State::Waiting;
        asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::seconds(1));
        co_await timer.async_wait(use_awaitable);
        if (stop_requested_) co_return false;
    }
}

// Mirrors copied for another scope (another project, realm or table) would keep that scope's
// rows and miss this one's: only a new copy (`resync`, or a first copy) may go on.
awaitable<std::optional<std::string>> Session::scope_change(Target& t) {
    std::optional<std::string> changed;
    auto& target = t.primary().connection();
    if (!t.checkpoint) {
        // Nothing held yet: what it will hold is for these scopes (a copy records them again).
        co_await record_mapping_scopes(target, t.config);
        co_return changed;
    }
    // A table mapping's scope: a target copied for other tenants (or for every row, as before
    // scopes existed, when nothing is recorded) holds rows it should not, and misses others.
    for (const auto& m : t.config.mappings) {
        auto r = co_await target.query_params(
            "SELECT scope FROM authsync.preset_scope WHERE slot = $1 AND preset = $2",
            pg::params(config_.source.slot, m.scope_record()));
        const std::string was = r.rows() > 0 ? std::string(r.get(0, 0)) : std::string();
        if (was != m.scope_text()) {
            auto shown = [](const std::string& s) { return s.empty() ? "every row" : s; };
            changed = fmt::format(
                "the rows of {} were copied for [{}], the config now says [{}]: run "
                "`authsync resync`",
                m.source_name(), shown(was), shown(m.scope_text()));
        }
    }
    for (const auto& composite : t.config.composites) {
        auto r = co_await target.query_params(
            "SELECT scope FROM authsync.preset_scope WHERE slot = $1 AND preset = $2",
            pg::params(config_.source.slot, composite.preset));
        const std::string now = composite.scope();
        if (r.rows() == 0 || r.get(0, 0) != now) {
            std::string was = "no copy";
            if (r.rows() > 0) was = std::string(r.get(0, 0));
            changed = fmt::format(
                "preset {}'s mirrors were copied for [{}], the config now says "
                "[{}]: run `authsync resync`",
                composite.preset, was, now);
        }
    }
    co_return changed;
}

awaitable<void> Session::check_publication() {
    co_await ensure_publication(source_, config_);
}

// Whether the targets' checkpoints need a new copy (true: resync), judged against the slot:
// a lost slot, a slot ahead of a checkpoint. Throws unless source.on_slot_lost says resync.
awaitable<bool> Session::judge_checkpoints(const std::optional<SlotInfo>& slot, bool resync) {
    const auto& src = config_.source;
    std::optional<Checkpoint> any;
    for (const auto& t : targets_) {
        if (t->checkpoint) any = t->checkpoint;
    }
    if (auto lost = slot_lost(src.slot, slot, any); lost && !resync) {
        if (src.on_slot_lost != config::OnSlotLost::Resync) {
            throw FatalError(*lost +
                             ": changes made since then are lost to this slot; run "
                             "`authsync resync` to rebuild the slot and copy the users "
                             "again");
        }
        log_->error("{}; resyncing (source.on_slot_lost: resync)", *lost);
        resync = true;
    }
    std::vector<Target*> behind;
    for (const auto& t : targets_) {
        if (!t->checkpoint || !slot || resync) continue;
        // E.g. a target restored from a backup, or branched from an earlier point in time:
        // streaming from its checkpoint would silently skip what the slot no longer holds.
        if (auto ahead = slot_ahead_of_checkpoint(src.slot, *slot, *t->checkpoint)) {
            behind.push_back(t.get());
            if (targets_.size() > 1 && src.snapshot == config::Snapshot::Initial) {
                // One of several (e.g. removed from the config and added again): it is copied
                // again and joins, the others stream on from their checkpoints.
                log_->warn("{}{}; copying this target again", about(*t), *ahead);
                continue;
            }
            if (src.on_slot_lost != config::OnSlotLost::Resync) {
                throw FatalError(about(*t) + *ahead);
            }
            log_->error("{}{}; resyncing (source.on_slot_lost: resync)", about(*t), *ahead);
            resync = true;
        }
    }
    if (!resync && behind.size() < targets_.size()) {
        for (auto* t : behind) t->checkpoint.reset();
    } else if (!resync && !behind.empty()) {
        // Every target is behind the slot: nothing streams from it that they could join.
        if (src.on_slot_lost != config::OnSlotLost::Resync) {
            throw FatalError(
                about(*behind.front()) +
                *slot_ahead_of_checkpoint(src.slot, *slot, *behind.front()->checkpoint));
        }
        resync = true;
    }
    co_return resync;
}

// The slot: found, judged against the checkpoints, (re)made with a copy when needed. Then the
// writers start. False when the session is done (stop_after_backfill).
awaitable<bool> Session::prepare_slot(std::optional<std::string> scope_changed) {
    const auto& src = config_.source;
    auto slot = co_await find_slot(source_, src.slot);
    if (slot && slot->plugin != "pgoutput") {
        throw FatalError(
            fmt::format("slot {} uses plugin {}, authsync needs pgoutput", src.slot, slot->plugin));
    }
    const bool resync = co_await judge_checkpoints(slot, options_.resync);
    const bool none =
        std::all_of(targets_.begin(), targets_.end(), [](const auto& t) { return !t->checkpoint; });
    // Targets without a checkpoint beside others that stream from the slot (a target added to
    // the config, or a first copy cut off between targets): each gets a copy of its own.
    const bool joining = !resync && !none && src.snapshot == config::Snapshot::Initial;
    const bool backfill = resync || (none && src.snapshot == config::Snapshot::Initial);
    if (scope_changed && !backfill) throw FatalError(*scope_changed);
    if (backfill && slot) {
        // The copy must see exactly the snapshot the slot starts from: only a slot created now
        // gives one. (A slot left by `init` or by an interrupted copy is simply made again.)
        if (slot->active) {
            throw SlotBusyError(fmt::format("slot {} is active in another process", src.slot));
        }
        co_await source_.query_params("SELECT pg_drop_replication_slot($1)", pg::params(src.slot));
        log_->info("dropped slot {} to recreate it with a snapshot for the initial copy", src.slot);
        slot.reset();
    }
    if (!slot) {
        if (!src.create_slot && !resync) {
            throw FatalError(
                fmt::format("slot {} does not exist on the source (run `authsync "
                            "init`, or set source.create_slot)",
                            src.slot));
        }
        if (backfill) {
            co_await replication_.connect(src.dsn, "authsync", true);
            auto created = co_await replication_.query("CREATE_REPLICATION_SLOT " +
                                                       quote_identifier(src.slot) +
                                                       " LOGICAL pgoutput (SNAPSHOT 'export')");
            const auto copied_at = Lsn::parse_or_throw(created.get(0, 1));
            const std::string snapshot_name(created.get(0, 2));
            log_->info("created slot {} at {}; copying existing users", src.slot,
                       copied_at.to_string());
            // Every target copies from the same snapshot (the replication connection keeps it
            // exported until its next command), and every lane starts again at its point.
            status_.state = State::Snapshotting;
            for (auto& t : targets_) {
                co_await delete_lane_checkpoints(t->primary().connection(), src.slot);
                co_await run_backfill(source_, t->primary().connection(), t->config, snapshot_name,
                                      copied_at, status_);
                t->copied_at = copied_at;
            }
        } else {
            co_await create_slot(source_, src.slot);
            log_->info("created slot {}", src.slot);
        }
    }
    if (joining && slot) {
        for (auto& t : targets_) {
            if (t->checkpoint) continue;
            if (options_.stop_after_backfill) {
                co_await copy_joining_target(*t);
            } else {
                joiners_.push_back(t->name());
            }
        }
        if (!joiners_.empty()) co_return false;
    }
    std::optional<Lsn> confirmed;
    if (slot) confirmed = slot->confirmed_flush;
    co_await start_writers(confirmed);
    if (options_.stop_after_backfill) {
        finished_ = true;
        co_return false;
    }
    co_return true;
}

// A target that joins a slot other targets stream from, copied here while nothing streams
// (join.hpp): `authsync backfill`, and a resync's copy cut off between targets. A running
// sidecar copies it alongside the stream instead (Supervisor::join_targets).
awaitable<void> Session::copy_joining_target(Target& t) {
    status_.targets[t.name()].state = "copying";
    status_.state = State::Snapshotting;
    t.copied_at = co_await copy_from_own_snapshot(source_, t.primary().connection(), t.config,
                                                  t.index, status_);
}

// A step of target `t` has had no answer since `started`, for fanout.max_target_lag.seconds
// (a lock held on its tables, a server that no longer answers): its statements are cancelled
// and its connections closed, so that the step fails now and the session ends with a
// TargetFailure dated from `started` (in_target). Whatever that target had not committed
// rolls back; its checkpoint keeps what it had.
void Session::stall(Target& t, Clock::time_point started) {
    if (t.stalled_since) return;
    t.stalled_since = started;
    log_->warn("target {}: no answer for {} s (fanout.max_target_lag); cutting its connections",
               t.name(), stall_limit().value_or(std::chrono::seconds{}).count());
    for (auto* w : t.lanes) {
        w->connection().cancel_query_in_background();
        w->close();
    }
}

std::string Session::stalled_message(const std::string& cause) const {
    return fmt::format(
        "no answer for {} s (fanout.max_target_lag), so its connections were cut: {}",
        stall_limit().value_or(std::chrono::seconds{}).count(), cause);
}

// Connects every lane and hands the FlushTracker where each starts. A stored checkpoint may
// have been committed asynchronously by a session that died before the target flushed it: it
// counts as durable only once the target's WAL flush passes the target's current insert
// position, like any commit of this session. Until then only what the slot already holds as
// confirmed is reported (nothing for a slot made above).
awaitable<void> Session::start_writers(std::optional<Lsn> slot_confirmed_flush) {
    const auto lanes = config_.apply.lanes;
    std::vector<Lsn> starts(writers_.size());
    std::vector<std::size_t> target_of;
    for (const auto& w : writers_) target_of.push_back(w->target());
    for (auto& t : targets_) {
        auto& conn = t->primary().connection();
        std::vector<Lsn> mine(lanes, t->copied_at);
        if (!t->copied_at.is_valid()) {
            std::map<std::size_t, Lsn> stored;
            for (const auto& [lane, c] :
                 co_await in_target(*t, read_lane_checkpoints(conn, config_.source.slot))) {
                stored[lane] = c.end_lsn;
            }
            try {
                mine = pipeline::lane_start_positions(stored, lanes);
            } catch (const ConfigError& e) {
                throw FatalError(about(*t) + e.what());
            }
        }
        if (lanes > 1) co_await in_target(*t, write_lane_rows(conn, config_.source.slot, mine));
        for (auto* w : t->lanes) starts[w->id()] = mine[w->lane()];
        t->last_checkpoint = Clock::now();
    }
    tracker_.emplace(target_of);
    std::vector<Lsn> flushed(writers_.size());
    for (auto& w : writers_) {
        if (!w->connection().is_open()) co_await in_target(w->id(), w->connect());
        auto [insert_point, flush] = co_await in_target(w->id(), w->prepare_streaming());
        tracker_->start_writer(w->id(), starts[w->id()], insert_point);
        flushed[w->id()] = flush;
    }
    tracker_->start(slot_confirmed_flush);
    for (auto& w : writers_) tracker_->target_flushed(w->id(), flushed[w->id()]);
    note_durable();
    start_lsn_ = tracker_->resume_lsn();
    skipping_.assign(writers_.size(), false);
    status_.received_lsn = tracker_->written();
    status_.applied_lsn = tracker_->committed_lsn();
    status_.flushed_lsn = tracker_->acknowledged();
}

awaitable<void> Session::start_streaming() {
    const auto& src = config_.source;
    // source_ stays open: the monitor emits heartbeats and reads slot health on it.
    // Output functions run in the walsender: the replication connection fixes their settings.
    if (!replication_.is_open()) co_await replication_.connect(src.dsn, "authsync", true);
    auto ident = co_await replication_.query("IDENTIFY_SYSTEM");
    log_->info("connected: system {} timeline {} wal {}", ident.get(0, 0), ident.get(0, 1),
               ident.get(0, 2));
    const auto command = fmt::format(
        "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {}, "
        "messages 'true')",
        quote_identifier(src.slot), start_lsn_.to_string(),
        quote_literal(quote_identifier(src.publication)));
    co_await replication_.start_copy_both(command);
    status_.state = State::Streaming;
    for (const auto& t : targets_) {
        auto& shown = status_.targets[t->name()];
        shown.state = status_.catch_up_to.count(t->name()) ? "catching_up" : "streaming";
        shown.error.clear();
    }
    reached_streaming_ = true;
    log_->info("streaming slot={} from lsn={} targets={} lanes={}", src.slot,
               start_lsn_.to_string(), targets_.size(), config_.apply.lanes);
}

awaitable<std::optional<pg::CopyBuffer>> Session::next_copy_data() {
    if (lookahead_) co_return std::exchange(lookahead_, std::nullopt);
    co_return co_await replication_.read_copy_data();
}

// A peek costs a recv when nothing is buffered: asked only when it decides something.
bool Session::more_data_waiting() {
    if (!lookahead_) lookahead_ = replication_.try_read_copy_data();
    return lookahead_.has_value();
}

awaitable<void> Session::stream() {
    for (;;) {
        // The batch sent is through: take its outcome. Nothing executes and whole transactions
        // wait: apply them now. A batch that goes whole goes even with more waiting on the
        // provider (the target would idle while the reader filled it; the next one grows while
        // it executes, at the target's own pace: at low load one transaction, from a backlog
        // what arrives during one execution, up to the batch limits). One that goes in chunks
        // (composite mirrors, an open transaction) holds the reader while the target executes
        // it, so it first takes what is already waiting. With a batch still executing, the
        // reader waits for whichever comes first: more from the provider, or that batch's
        // outcome, which wakes it; at low load what arrived meanwhile goes behind it (may_chain,
        // whose peek may fill lookahead_).
        if (sent_batch_ && sent_batch_->done) {
            co_await join_oldest();
            continue;
        }
        if (!sent_batch_ && pending_txns_ > 0 && !in_transaction_ &&
            (all_go_whole() || !more_data_waiting())) {
            co_await apply_batch();
            continue;
        }
        if (may_chain()) {
            co_await apply_batch(true);
            continue;
        }
        if (tracker_->has_unflushed() && !lookahead_) arm_durability_wakeup();
        std::optional<pg::CopyBuffer> data;
        reading_stream_ = true;
        try {
            data = co_await next_copy_data();
        } catch (const boost::system::system_error& e) {
            if (e.code() != asio::error::operation_aborted) throw;
        }
        reading_stream_ = false;
        if (stop_requested_) break;
        if (!data && batch_wakeup_) {
            batch_wakeup_ = false;
            continue;
        }
        if (!data && durability_wakeup_) {
            durability_wakeup_ = false;
            co_await check_durable();
            continue;
        }
        if (!data) throw pg::PgError::connection_loss("the provider ended the replication stream");
        auto frame = wire::decode_server_message(data->bytes());
        if (auto* x = std::get_if<wire::XLogData>(&frame)) {
            co_await handle_xlog(*x);
        } else {
            co_await handle_keepalive(std::get<wire::PrimaryKeepalive>(frame));
        }
    }
    // Clean stop: a whole batch commits, a half-received transaction rolls back.
    status_.state = State::Stopping;
    co_await join_batch();
    if (in_transaction_) {
        co_await rollback();
        log_->info(
            "stopped inside the source transaction of lsn={}: what it sent to the target was "
            "rolled back; it is applied at the next start",
            txn_final_lsn_.to_string());
    } else if (!idle()) {
        co_await apply_batch();
        co_await join_batch();
    }
    co_await finish_together();
    co_await wait_durable_at_stop();
    co_await send_status(false);
    log_->info("stopped at lsn={}", tracker_->acknowledged().to_string());
}

awaitable<void> Session::handle_keepalive(const wire::PrimaryKeepalive& k) {
    status_.provider_wal_lsn = std::max(status_.provider_wal_lsn, k.wal_end);
    // Everything received is applied and flushed: what the provider sent up to its WAL end
    // holds nothing more for us. It becomes every lane's checkpoint first, and is acknowledged
    // (the slot advances) once that is durable: the slot is then never ahead of the target's
    // checkpoints (slot_ahead_of_checkpoint).
    const bool applied_all = idle() && !lookahead_;
    if (auto record = tracker_->idle_record(k.wal_end, applied_all, Clock::now(),
                                            config_.source.status_interval)) {
        co_await commit_writers(*record, std::nullopt, true);
    }
    if (k.reply_requested) co_await send_status(false);
}

awaitable<void> Session::handle_xlog(const wire::XLogData& x) {
    status_.provider_wal_lsn = std::max(status_.provider_wal_lsn, x.wal_end);
    auto message = decoder_.decode(x.payload);
    if (auto* b = std::get_if<pgoutput::Begin>(&message)) {
        begin(*b);
    } else if (auto* c = std::get_if<pgoutput::Commit>(&message)) {
        co_await commit(*c);
    } else if (auto* r = std::get_if<pgoutput::Relation>(&message)) {
        relations_.apply(*r);
        for (auto& t : targets_) t->router->bind(*r);
    } else if (auto* t = std::get_if<pgoutput::Type>(&message)) {
        relations_.apply(*t);
    } else if (auto* lm = std::get_if<pgoutput::LogicalMessage>(&message)) {
        // Our own heartbeat, inside a transaction: its apply gives the end-to-end latency.
        if (lm->transactional && in_transaction_ && lm->prefix == kHeartbeatPrefix &&
            lm->content == config_.source.slot) {
            txn_has_heartbeat_ = true;
        }
    } else if (!std::holds_alternative<pgoutput::Origin>(message)) {
        if (!in_transaction_) {
            throw ProtocolError(
                fmt::format("{} message outside a transaction", pgoutput::message_name(message)));
        }
        co_await handle_change(message);
    }
}

void Session::begin(const pgoutput::Begin& b) {
    if (in_transaction_) throw ProtocolError("Begin message inside a transaction");
    in_transaction_ = true;
    txn_commit_time_ = b.commit_time;
    txn_final_lsn_ = b.final_lsn;
    txn_has_heartbeat_ = false;
    // Transactions that committed before a lane's checkpoint are already in its target.
    bool applies = false;
    for (std::size_t w = 0; w < writers_.size(); ++w) {
        skipping_[w] = tracker_->skips(w, b.final_lsn);
        applies = applies || !skipping_[w];
        writers_[w]->set_source_transaction(b.final_lsn);
    }
    if (applies && !status_.oldest_pending_commit_time) {
        status_.oldest_pending_commit_time = b.commit_time;
    }
}

awaitable<void> Session::commit(const pgoutput::Commit& c) {
    if (!in_transaction_) throw ProtocolError("Commit message outside a transaction");
    // As worker.c: the Commit must close the transaction its Begin opened.
    if (c.commit_lsn != txn_final_lsn_) {
        throw ProtocolError(
            fmt::format("Commit at {} closes a transaction that began with "
                        "final_lsn {}",
                        c.commit_lsn.to_string(), txn_final_lsn_.to_string()));
    }
    in_transaction_ = false;
    tracker_->received(c.end_lsn);
    status_.received_lsn = tracker_->written();
    if (std::all_of(skipping_.begin(), skipping_.end(), [](bool s) { return s; })) co_return;
    if (pending_txns_ == 0) batch_started_ = Clock::now();
    if (txn_has_heartbeat_) pending_heartbeat_ = c.commit_time;
    pending_end_lsn_ = c.end_lsn;
    pending_commit_time_ = c.commit_time;
    ++pending_txns_;
    // A full or old batch goes now; otherwise the stream loop applies it as soon as no more
    // data is waiting.
    const bool full =
        std::any_of(writers_.begin(), writers_.end(), [](const auto& w) { return w->full(); });
    const bool old = Clock::now() - batch_started_ >= config_.apply.batch_max_delay;
    if (full || old || stop_requested_) co_await apply_batch();
}

awaitable<void> Session::handle_change(const pgoutput::Message& message) {
    operations_.clear();
    for (auto& t : targets_) {
        // The router numbers its target's lanes from 0: make them writer ids.
        const auto first = operations_.size();
        t->router->route(message, relations_, operations_);
        const auto offset = t->primary().id();
        for (auto i = first; i < operations_.size(); ++i) operations_[i].writer += offset;
    }
    for (auto& op : operations_) {
        const auto id = op.writer;
        if (skipping_[id]) continue;
        auto& writer = *writers_[id];
        if (std::holds_alternative<pipeline::Truncate>(op.change)) {
            co_await join_batch();
            co_await in_target(id, writer.truncate(op, txn_commit_time_));
            continue;
        }
        writer.add(std::move(op), txn_commit_time_);
        // Bounded memory for transactions of any size: the batch goes into the open target
        // transaction now; it commits with the source transaction's Commit.
        if (writer.must_flush_chunk()) {
            co_await join_batch();
            co_await in_target(id, writer.flush_chunk());
        }
    }
}

// Sends the batch's commit and returns: the target executes it while the stream goes on, and
// join_batch() reads the outcome before anything else goes to the writers, except a batch
// chained behind it (`chained`, may_chain).
awaitable<void> Session::apply_batch(bool chained) {
    // Built while the previous batch still executes in the target: W1's target idled for
    // the array building of every batch between one commit and the next.
    for (auto& w : writers_) w->stage_commit();
    if (!chained) co_await join_batch();
    BatchRecord batch;
    batch.started = Clock::now();
    if (pending_txns_ > 0) {
        batch.end_lsn = pending_end_lsn_;
        batch.commit_time = pending_commit_time_;
    }
    batch.txns = std::exchange(pending_txns_, 0);
    batch.heartbeat = std::exchange(pending_heartbeat_, std::nullopt);
    // Still lag until the batch's commit is read (join_batch).
    batch.oldest = std::exchange(status_.oldest_pending_commit_time, std::nullopt);
    if (!status_.oldest_sent_commit_time) status_.oldest_sent_commit_time = batch.oldest;
    co_await send_batch(std::move(batch), false);
}

// At low load, whole transactions received while a batch executes go now, behind it, rather
// than once its outcome has come back: the target starts them as soon as it has committed that
// one. At 1,000 tx/s a quarter of the transactions arrived while the batch before executed,
// and waited 0.3 ms (p50) for its round trip. Low load: the batch executing is one
// transaction, and nothing more waits on the provider. From a backlog batches keep growing
// while one executes instead: chaining the transactions that trickled in made W1's batches
// smaller and cost it 7%. One writer only (one target, one lane): its checkpoint row is the
// guard (TargetWriter::can_chain).
bool Session::may_chain() {
    return sent_batch_ && sent_batch_->record.txns == 1 && !chained_batch_ && pending_txns_ > 0 &&
           !in_transaction_ && !stop_requested_ && writers_.size() == 1 &&
           writers_.front()->can_chain() && !more_data_waiting();
}

// Each writer with work commits the batch with its checkpoint, in parallel. A writer with
// nothing to write covers the batch as soon as its earlier commits are durable; a target
// whose checkpoint rows fall behind that gets a checkpoint-only commit now and then, and the
// provider is acknowledged only as far as some checkpoint row holds. `all`: every writer
// commits (an idle record, or the lanes finishing together).
awaitable<void> Session::send_batch(BatchRecord batch, bool all) {
    for (auto& t : targets_) {
        const auto before = batch.committing.size();
        for (auto* w : t->lanes) {
            if (all || w->has_work()) batch.committing.push_back(w);
        }
        // A target with nothing to write still needs a checkpoint row that holds what is
        // acknowledged (FlushTracker::stored_behind), now and then: transactions that bring it
        // nothing (other tenants' rows, other slots' heartbeats) must not cost it a commit
        // each. N authsyncs on one provider each received every other one's heartbeats, and
        // each heartbeat was a target commit in all N of them. Our own heartbeat still commits
        // a single target's checkpoint: it keeps an idle slot current.
        const bool due = (targets_.size() == 1 && batch.heartbeat) ||
                         (tracker_->stored_behind(t->index) &&
                          Clock::now() - t->last_checkpoint >= config_.source.status_interval);
        if (batch.committing.size() == before && due) {
            batch.committing.push_back(&t->primary());
            if (targets_.size() > 1) ++status_.targets[t->name()].checkpoint_commits;
        }
        if (batch.committing.size() > before) t->last_checkpoint = Clock::now();
    }
    // Every writer's batch is taken before the first suspension (send_commit): what the
    // stream adds meanwhile belongs to the next batch.
    std::vector<std::function<awaitable<void>()>> tasks;
    for (auto* w : batch.committing) {
        tasks.push_back([this, w, end = batch.end_lsn, at = batch.commit_time]() {
            return in_target(w->id(), w->send_commit(end, at));
        });
    }
    co_await in_parallel(std::move(tasks));
    // The outcomes are read as they come, while the stream goes on; join_batch() takes them.
    auto ex = co_await asio::this_coro::executor;
    auto sent = std::make_shared<SentBatch>(std::move(batch), ex);
    auto before = sent_batch_;  // set: this batch went behind it (apply_batch(true))
    (before ? chained_batch_ : sent_batch_) = sent;
    if (before && !sent->record.committing.empty()) {
        ++status_.batches_chained;
        log_->debug("batch of {} transactions sent behind the batch executing", sent->record.txns);
    }
    asio::co_spawn(ex, finish_batch(sent, before), [this, sent](std::exception_ptr e) {
        sent->error = e;
        sent->done = true;
        sent->finished.cancel();
        // The reader waits on the provider: wake it to take the outcome (and, at low load,
        // send what arrived meanwhile).
        if (reading_stream_ && sent_batch_ == sent) {
            batch_wakeup_ = true;
            replication_.wake();
        }
    });
}

awaitable<void> Session::finish_batch(std::shared_ptr<SentBatch> sent,
                                      std::shared_ptr<SentBatch> before) {
    // Its outcomes come after those of the batch it went behind, on the same connection.
    if (before) {
        co_await before->wait();
        if (before->error) throw std::runtime_error("not applied: the batch before it failed");
    }
    std::vector<std::function<awaitable<void>()>> tasks;
    sent->positions.resize(sent->record.committing.size());
    sent->answered.resize(sent->record.committing.size());
    for (std::size_t i = 0; i < sent->record.committing.size(); ++i) {
        tasks.push_back([this, w = sent->record.committing[i], &out = sent->positions[i],
                         &at = sent->answered[i]]() -> awaitable<void> {
            out = co_await in_target(w->id(), w->finish_commit());
            at = Clock::now();
        });
    }
    co_await in_parallel(std::move(tasks));
}

awaitable<void> Session::join_batch() {
    while (sent_batch_) co_await join_oldest();
}

awaitable<void> Session::join_oldest() {
    if (!sent_batch_) co_return;
    auto sent = std::exchange(sent_batch_, std::exchange(chained_batch_, nullptr));
    co_await sent->wait();
    if (sent->error) std::rethrow_exception(sent->error);
    const auto& batch = sent->record;
    std::vector<std::optional<Lsn>> flushed(targets_.size());
    for (std::size_t i = 0; i < batch.committing.size(); ++i) {
        const auto& positions = sent->positions[i];
        const auto* w = batch.committing[i];
        if (positions.committed_at) {
            tracker_->committed(w->id(), *batch.end_lsn, positions.committed_at);
            health_.recovered(targets_[w->target()]->name());
        }
        auto& f = flushed[w->target()];
        f = std::max(f.value_or(Lsn{}), positions.flushed);
    }
    if (batch.end_lsn) {
        std::vector<bool> committing(writers_.size(), false);
        for (const auto* w : batch.committing) committing[w->id()] = true;
        for (auto& w : writers_) {
            if (!committing[w->id()]) tracker_->committed(w->id(), *batch.end_lsn, std::nullopt);
        }
    }
    // A target's flush position holds for every lane into it.
    for (std::size_t t = 0; t < targets_.size(); ++t) {
        if (flushed[t]) target_flushed(t, *flushed[t]);
    }
    status_.applied_lsn = std::max(status_.applied_lsn, tracker_->committed_lsn());
    note_durable();
    if (batch.txns > 0) {
        status_.oldest_sent_commit_time = sent_batch_ ? sent_batch_->record.oldest : std::nullopt;
    }
    batch_applied(batch);
    if (batch.txns > 0 && !stop_requested_) judge_stragglers(*sent);
}

// fanout.max_target_lag: each target with changes in a committed batch, its time and changes
// (a target catching up after its copy is not judged: it has more to write by design). A
// target slow per change, batch after batch, while the stream falls behind, is detached.
void Session::judge_stragglers(const SentBatch& sent) {
    if (!detaching()) return;
    std::map<std::string, pipeline::TargetHealth::Work> work;
    const auto& batch = sent.record;
    for (std::size_t i = 0; i < batch.committing.size(); ++i) {
        if (sent.positions[i].rows == 0) continue;
        const auto& t = *targets_[batch.committing[i]->target()];
        if (status_.catch_up_to.count(t.name())) continue;
        auto& w = work[t.name()];
        w.took = std::max(w.took, sent.answered[i] - batch.started);
        w.rows += sent.positions[i].rows;
    }
    const auto lag = batch.commit_time
                         ? std::chrono::microseconds(std::max<std::int64_t>(
                               PgTimestamp::now().micros - batch.commit_time->micros, 0))
                         : std::chrono::microseconds{};
    const auto lag_bytes = batch.end_lsn && status_.provider_wal_lsn > *batch.end_lsn
                               ? lsn_bytes_between(*batch.end_lsn, status_.provider_wal_lsn)
                               : 0;
    auto slow = health_.batch_committed(work, lag, lag_bytes, targets_.size(), Clock::now());
    if (!slow) return;
    const auto& t = **std::find_if(targets_.begin(), targets_.end(),
                                   [&](const auto& x) { return x->name() == slow->name; });
    const auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - slow->since);
    throw TargetFailure(
        t.name(), pg::ErrorClass::Transient,
        about(t) + fmt::format("{:.1f}x slower per change than every other target, {} batches in a "
                               "row over {} s, while the stream was {} s ({} bytes) behind "
                               "(fanout.max_target_lag)",
                               slow->ratio, slow->batches, seconds.count(),
                               std::chrono::duration_cast<std::chrono::seconds>(lag).count(),
                               lag_bytes),
        slow->since);
}

// A session that fails with a batch's outcome still awaited: its connections close, and the
// reading task ends before the session goes.
awaitable<void> Session::abandon_batch() {
    if (!sent_batch_) co_return;
    auto sent = std::exchange(sent_batch_, nullptr);
    auto chained = std::exchange(chained_batch_, nullptr);
    if (!sent->done || (chained && !chained->done)) {
        for (auto& w : writers_) {
            w->connection().cancel_query();
            w->close();
        }
    }
    co_await sent->wait();
    if (chained) co_await chained->wait();
}

awaitable<void> Session::commit_writers(std::optional<Lsn> end_lsn,
                                        std::optional<PgTimestamp> commit_time, bool all) {
    co_await join_batch();
    BatchRecord batch;
    batch.end_lsn = end_lsn;
    batch.commit_time = commit_time;
    batch.started = Clock::now();
    co_await send_batch(std::move(batch), all);
    co_await join_batch();
}

void Session::batch_applied(const BatchRecord& batch) {
    for (auto& w : writers_) {
        status_.dead_letters += w->take_dead_letters();
        status_.target_round_trips += w->take_round_trips();
        auto counts = w->take_counts();
        if (batch.txns == 0) continue;
        auto& by_target = status_.targets[targets_[w->target()]->name()].rows_applied;
        for (const auto& [name, rows] : counts) {
            for (auto* total : {&status_.rows_applied[name], &by_target[name]}) {
                total->upserts += rows.upserts;
                total->deletes += rows.deletes;
            }
        }
    }
    if (batch.txns == 0) return;
    status_.last_commit_time = batch.commit_time;
    status_.last_applied_at = PgTimestamp::now();
    status_.txns_applied += batch.txns;
    const double apply_seconds =
        std::chrono::duration<double>(Clock::now() - batch.started).count();
    // Transactions that brought no target anything (and no checkpoint fell due) committed
    // nothing: not a batch committed to a target.
    if (!batch.committing.empty()) {
        ++status_.batches;
        status_.batch_apply_seconds.observe(apply_seconds);
    }
    log_->debug("applied {} transactions up to lsn={} in {:.1f} ms", batch.txns,
                batch.end_lsn->to_string(), apply_seconds * 1000);
    if (batch.heartbeat) {
        const auto us = status_.last_applied_at->micros - batch.heartbeat->micros;
        const double seconds = us > 0 ? static_cast<double>(us) / 1e6 : 0.0;
        status_.e2e_latency_ms = seconds * 1000.0;
        status_.e2e_latency_seconds.observe(seconds);
    }
}

// Between batches: has each target flushed what it committed? (Inside a transaction the next
// commit will tell.) Any lane of a target not inside a transaction can ask for it.
awaitable<void> Session::check_durable() {
    // A writer with a batch in flight is skipped (busy): that batch brings its target's flush
    // position with its outcome. Joining it first held the reader until it was through, every
    // 100 ms: what arrived meanwhile was not read.
    if (!tracker_->has_unflushed()) co_return;
    const auto before = tracker_->acknowledged();
    for (auto& t : targets_) {
        const bool waiting = std::any_of(t->lanes.begin(), t->lanes.end(), [&](const auto* w) {
            return tracker_->has_unflushed(w->id());
        });
        if (!waiting) continue;
        for (auto* w : t->lanes) {
            if (w->busy()) continue;
            target_flushed(t->index, co_await in_target(*t, w->flush_lsn()));
            break;
        }
    }
    note_durable();
    if (tracker_->acknowledged() > before) co_await send_status(false);
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
    // An expiry already queued when the session goes away still runs, with no error: the
    // weak reference tells it that `this` is gone.
    durability_timer_.async_wait(
        [this, alive = std::weak_ptr<const bool>(alive_)](const boost::system::error_code& ec) {
            if (ec || alive.expired()) return;
            durability_armed_ = false;
            durability_wakeup_ = true;
            replication_.wake();
        });
}

// At a clean stop every lane records the same position, so that a restart with another lane
// count finds them together (pipeline::lane_start_positions). A single lane records what
// transactions that brought it nothing left behind (no checkpoint commit of their own): the
// slot then stops where the stream did.
awaitable<void> Session::finish_together() {
    co_await join_batch();
    if (in_transaction_) co_return;
    if (auto at = tracker_->together_at()) co_await commit_writers(*at, std::nullopt, true);
}

// A clean stop reports what the target has flushed; a little wait lets its walwriter finish.
awaitable<void> Session::wait_durable_at_stop() {
    durability_timer_.cancel();
    for (int i = 0; i < 20 && tracker_->has_unflushed(); ++i) {
        for (auto& t : targets_) {
            if (t->primary().busy()) continue;
            target_flushed(t->index, co_await t->primary().flush_lsn());
        }
        note_durable();
        if (!tracker_->has_unflushed()) break;
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
        co_await t.async_wait(use_awaitable);
    }
}

awaitable<void> Session::rollback() {
    co_await join_batch();
    for (auto& w : writers_) {
        co_await w->rollback();
        w->take_counts();
    }
    pending_heartbeat_.reset();
    pending_txns_ = 0;
}

awaitable<void> Session::send_status(bool reply_requested) {
    if (!replication_.is_open()) co_return;
    wire::StandbyStatusUpdate u;
    u.write = tracker_->written();
    u.flush = tracker_->acknowledged();
    if (ack_hold_) u.flush = std::min(u.flush, *ack_hold_);
    u.apply = u.flush;
    u.send_time = PgTimestamp::now();
    u.reply_requested = reply_requested;
    auto bytes = wire::encode_standby_status_update(u);
    co_await replication_.put_copy_data(bytes);
    status_.flushed_lsn = u.flush;
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
        log_->error(
            "slot {} wal_status is {}: the provider {} WAL this slot needs "
            "(max_slot_wal_keep_size); {}",
            config_.source.slot, *h.wal_status,
            *h.wal_status == "lost" ? "has removed" : "may soon remove",
            *h.wal_status == "lost" ? "run `authsync resync`"
                                    : "catch up, or raise max_slot_wal_keep_size");
    }
}

// Heartbeats and slot health are advisory: the stream goes on without them.
awaitable<void> Session::monitor_once(bool& heartbeats, Clock::time_point& last_heartbeat,
                                      Clock::time_point& last_slot_check) {
    const auto slot_every = std::chrono::milliseconds(5000);
    if (!source_.is_open()) co_await source_.connect(config_.source.dsn, "authsync");
    if (Clock::now() - last_slot_check >= slot_every) {
        last_slot_check = Clock::now();
        co_await check_slot_health();
    }
    if (!heartbeats || Clock::now() - last_heartbeat < config_.source.heartbeat_interval) {
        co_return;
    }
    last_heartbeat = Clock::now();
    try {
        co_await source_.query_params("SELECT pg_logical_emit_message(true, $1, $2)",
                                      pg::params(kHeartbeatPrefix, config_.source.slot));
    } catch (const pg::PgError& e) {
        if (e.sqlstate() != "42501") throw;
        heartbeats = false;
        log_->warn(
            "heartbeats disabled: {} (GRANT EXECUTE ON FUNCTION "
            "pg_logical_emit_message(boolean, text, text) TO the source role to measure "
            "end-to-end latency)",
            e.what());
    }
}

awaitable<void> Session::monitor_loop() {
    using namespace std::chrono_literals;
    const auto heartbeat_every = config_.source.heartbeat_interval;
    auto last_heartbeat = Clock::now() - heartbeat_every;
    auto last_slot_check = Clock::now() - 5000ms;
    bool warned = false;
    bool heartbeats = heartbeat_every.count() > 0;
    while (streaming_) {
        try {
            co_await monitor_once(heartbeats, last_heartbeat, last_slot_check);
            warned = false;
        } catch (const pg::PgError& e) {
            if (!warned) log_->warn("provider monitor: {}", e.what());
            warned = true;
            if (pg::classify(e) == pg::ErrorClass::Transient) source_.close();
        }
        monitor_timer_.expires_after(std::min<std::chrono::milliseconds>(
            heartbeat_every.count() > 0 ? heartbeat_every : 5000ms, 1000ms));
        boost::system::error_code ec;
        co_await monitor_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
    }
}

namespace {

pipeline::TargetLagLimit lag_limit(const config::FanoutConfig& fanout) {
    return {fanout.max_target_lag_seconds, fanout.max_target_lag_bytes};
}

}  // namespace

Supervisor::Supervisor(asio::io_context& io, config::Config config, SessionOptions options)
    : io_(io),
      config_(std::move(config)),
      session_options_(options),
      health_(lag_limit(config_.fanout)),
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
        logger("engine")->warn(
            "batch still in flight after {} s; rolling it back",
            std::chrono::duration_cast<std::chrono::seconds>(kStopGrace).count());
        session_->abort();
    });
}

namespace {

std::string names(const std::vector<std::string>& list) {
    std::string out;
    for (const auto& n : list) out += (out.empty() ? "" : ", ") + n;
    return out;
}

}  // namespace

void Supervisor::reload(config::Config next) {
    auto log = logger("engine");
    if (stop_requested_) return;
    const auto& now = pending_ ? *pending_ : config_;
    std::vector<std::string> added, removed, kept;
    for (const auto& t : next.targets) {
        const bool known = std::any_of(now.targets.begin(), now.targets.end(),
                                       [&](const auto& o) { return o.name == t.name; });
        (known ? kept : added).push_back(t.name);
    }
    for (const auto& t : now.targets) {
        if (std::none_of(next.targets.begin(), next.targets.end(),
                         [&](const auto& n) { return n.name == t.name; })) {
            removed.push_back(t.name);
        }
    }
    // The endpoint is already listening: its settings stay until a restart.
    next.status = config_.status;
    log->info("reload: targets added [{}], removed [{}], kept [{}]; restarting the session",
              names(added), names(removed), names(kept));
    pending_ = std::move(next);
    if (session_) session_->request_stop();
    backoff_timer_.cancel();  // waiting to reconnect: the new config starts now
}

// A session ended (cleanly, or with an error): a reloaded config takes over now.
bool Supervisor::take_reload() {
    if (!pending_) return false;
    if (!previous_) previous_ = config_;
    config_ = std::move(*pending_);
    pending_.reset();
    // A reload is the operator's word that what failed for good may be tried again; detached
    // targets stay so until their servers answer, unless no other target is left.
    health_.set_limit(lag_limit(config_.fanout));
    health_.clear_failed();
    const bool any_attached = std::any_of(config_.targets.begin(), config_.targets.end(),
                                          [&](const auto& t) { return !health_.detached(t.name); });
    for (const auto& [name, shown] : status_.targets) {
        const bool kept = std::any_of(config_.targets.begin(), config_.targets.end(),
                                      [&](const auto& t) { return t.name == name; });
        if (!kept || !any_attached) health_.forget(name);
    }
    // Removed targets leave the status.
    for (auto it = status_.targets.begin(); it != status_.targets.end();) {
        const bool kept = std::any_of(config_.targets.begin(), config_.targets.end(),
                                      [&](const auto& t) { return t.name == it->first; });
        if (!kept) status_.catch_up_to.erase(it->first);
        it = kept ? std::next(it) : status_.targets.erase(it);
    }
    return true;
}

status::Snapshot Supervisor::snapshot() const {
    return make_snapshot(status_, config_.source.slot, config_.source.publication,
                         PgTimestamp::now());
}

std::optional<config::Config> Supervisor::session_config() const {
    auto runs = [&](const config::NamedTarget& t) {
        return !health_.detached(t.name) &&
               std::find(joining_.begin(), joining_.end(), t.name) == joining_.end();
    };
    if (std::none_of(config_.targets.begin(), config_.targets.end(), runs)) return std::nullopt;
    return config_.with_targets(runs);
}

void Supervisor::start_joining(const std::vector<std::string>& names) {
    for (const auto& name : names) {
        if (std::find(joining_.begin(), joining_.end(), name) != joining_.end()) continue;
        joining_.push_back(name);
        auto& shown = status_.targets[name];
        shown.state = "copying";
        shown.error.clear();
    }
    if (joiner_running_) return;
    joiner_running_ = true;
    asio::co_spawn(io_, join_targets(), asio::detached);
}

// Targets that join copy here, one after the other, while the session streams the others
// (join.hpp). From just before a copy's snapshot until the session that includes them starts,
// the slot is acknowledged no further (ack_hold_), so that it still holds every transaction
// the copies do not. Then the session restarts with them.
awaitable<void> Supervisor::join_targets() {
    auto log = logger("engine");
    asio::steady_timer retry(co_await asio::this_coro::executor);
    while (!joining_.empty() && !stop_requested_) {
        const auto name = joining_.front();
        auto t = std::find_if(config_.targets.begin(), config_.targets.end(),
                              [&](const auto& c) { return c.name == name; });
        if (t == config_.targets.end()) {  // removed by a reload
            joining_.erase(joining_.begin());
            continue;
        }
        const auto index = static_cast<std::size_t>(t - config_.targets.begin());
        std::string failure;
        try {
            co_await join_alongside(config_.for_target(index), index, status_, [this] {
                if (!ack_hold_) ack_hold_ = status_.flushed_lsn;
            });
        } catch (const std::exception& e) {
            failure = e.what();
        }
        if (stop_requested_) break;
        if (!failure.empty()) {
            ack_hold_.reset();  // nothing holds the slot while it waits to try again
            status_.targets[name].error = failure;
            log->warn("target {}: its copy failed: {}; trying again in {} s", name, failure,
                      kReattachProbe.count());
            retry.expires_after(kReattachProbe);
            boost::system::error_code ec;
            co_await retry.async_wait(asio::redirect_error(use_awaitable, ec));
            continue;
        }
        std::erase(joining_, name);
        // It has what its snapshot saw; the stream brings it the rest, up to here at least.
        status_.catch_up_to[name] = std::max(status_.provider_wal_lsn, status_.received_lsn);
        status_.targets[name].state = "catching_up";
        log->info("target {} copied; it joins the stream", name);
        if (joining_.empty()) restart_session();
    }
    joiner_running_ = false;
}

bool Supervisor::leave_out(const std::string& name, bool transient, const std::string& failure,
                           std::size_t attached,
                           std::optional<std::chrono::steady_clock::time_point> stalled_since) {
    using Verdict = pipeline::TargetHealth::Verdict;
    auto& shown = status_.targets[name];
    const auto held = shown.durable_lsn.is_valid() && status_.provider_wal_lsn.is_valid()
                          ? lsn_bytes_between(shown.durable_lsn, status_.provider_wal_lsn)
                          : 0;
    // A stalled target failed since its unanswered step began, whatever the session's cause.
    const auto verdict = health_.failed(name, transient || stalled_since.has_value(), held,
                                        attached, Clock::now(), stalled_since);
    if (verdict == Verdict::Wait) return false;
    status_.catch_up_to.erase(name);
    auto log = logger("engine");
    shown.state = verdict == Verdict::Detach ? "detached" : "failed";
    shown.error = failure;
    if (verdict == Verdict::Detach) {
        const auto since = Clock::now() - health_.failing_since(name).value_or(Clock::now());
        log->warn(
            "target {} detached (fanout.max_target_lag): failing for {} s, {} bytes of WAL "
            "behind; the other targets stream on without it, and it is copied again once its "
            "server answers: {}",
            name, std::chrono::duration_cast<std::chrono::seconds>(since).count(), held, failure);
    } else {
        log->error(
            "target {} failed: {}; the other targets stream on without it until a reload "
            "(SIGHUP) or a restart",
            name, failure);
    }
    return true;
}

void Supervisor::restart_session() {
    if (session_) session_->request_stop();
    backoff_timer_.cancel();
}

// A detached target whose server answers again runs with the next session, which copies it
// again when the slot has moved past its checkpoint (Session::judge_checkpoints).
awaitable<void> Supervisor::probe_detached() {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    while (!stop_requested_) {
        timer.expires_after(kReattachProbe);
        boost::system::error_code ec;
        co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
        for (const auto& name : health_.to_probe()) {
            if (stop_requested_) break;
            auto t = std::find_if(config_.targets.begin(), config_.targets.end(),
                                  [&](const auto& c) { return c.name == name; });
            if (t == config_.targets.end()) continue;
            pg::AsyncConnection probe(ex);
            std::exception_ptr failed;
            try {
                co_await probe.connect(t->target.dsn, "authsync");
                co_await probe.query("SELECT 1");
            } catch (const std::exception&) {
                failed = std::current_exception();
            }
            if (failed || !health_.detached(name)) continue;
            health_.reattach(name);
            logger("engine")->info("target {} answers again; re-attaching it", name);
            restart_session();
        }
    }
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

// Full jitter over the upper half of the window: spreads instances that failed together
// without ever retrying immediately.
awaitable<void> Supervisor::back_off(const std::string& failure, std::chrono::milliseconds window,
                                     std::mt19937_64& rng) {
    std::uniform_int_distribution<long> jitter(window.count() / 2, window.count());
    std::chrono::milliseconds wait{jitter(rng)};
    status_.state = State::Reconnecting;
    ++status_.reconnects;
    logger("engine")->warn("{}; reconnecting in {} ms", failure, wait.count());
    backoff_timer_.expires_after(wait);
    boost::system::error_code ec;
    co_await backoff_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
}

// A session failed for good: true when another config runs next, false when the process stops.
bool Supervisor::another_config(const std::string& failure) {
    auto log = logger("engine");
    if (take_reload()) {
        // A reload asked for during a failing session: its config gets its own start.
        log->error("{}", failure);
        return true;
    }
    if (previous_) {
        // A reloaded config that cannot start: the one before runs on, as it did.
        log->error("{}; reload: going back to the config that ran before", failure);
        config_ = std::move(*previous_);
        previous_.reset();
        return true;
    }
    status_.state = State::Failed;
    log->error("{}", failure);
    return false;
}

// The session `running` asks for: a sink of one target, the source of a JetStream stream, or
// the slot applied straight into the targets.
std::unique_ptr<RoleSession> Supervisor::make_session(const config::Config& running,
                                                      asio::any_io_executor ex) {
    if (session_options_.sink_target) {
        return make_sink_session(running, *session_options_.sink_target, status_, sink_reread_, ex);
    }
    if (running.transport.nats()) return make_source_session(running, status_, ex);
    return std::make_unique<Session>(running, session_options_, status_, health_, ack_hold_, ex);
}

void Supervisor::record_failure(const std::string& failure) {
    ++status_.errors;
    status_.last_error = failure;
    status_.last_error_at = PgTimestamp::now();
}

awaitable<int> Supervisor::run() {
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex, sample_lag(), asio::detached);
    asio::co_spawn(ex, probe_detached(), asio::detached);
    std::mt19937_64 rng(std::random_device{}());
    auto backoff = config_.reconnect.initial_backoff;
    while (!stop_requested_) {
        take_reload();  // one that came during a backoff wait
        // The targets that copied alongside are in this session: the slot may move on.
        if (joining_.empty() && !joiner_running_) ack_hold_.reset();
        const auto running = session_config();
        if (!running) {
            // Every target copies to join or is detached: wait for one (restart_session).
            status_.state = State::Waiting;
            backoff_timer_.expires_after(kReattachProbe);
            boost::system::error_code ec;
            co_await backoff_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
            continue;
        }
        const auto made = make_session(*running, ex);
        RoleSession& session = *made;
        session_ = &session;
        std::string failure;
        bool transient = false;
        std::vector<TargetFailure::Failed> failed_targets;
        try {
            co_await session.run();
            session_ = nullptr;
            if (stop_requested_ || session.finished()) break;
            if (!session.joiners().empty()) {
                start_joining(session.joiners());
                continue;
            }
            // A resync asked for on the command line is done once it has copied.
            session_options_.resync = false;
            if (session.reached_streaming()) previous_.reset();
            if (take_reload()) continue;
        } catch (const TargetFailure& e) {
            failure = e.what();
            transient = e.cause() == pg::ErrorClass::Transient;
            failed_targets = e.failures();
        } catch (const Error& e) {
            // Decided once, by SQLSTATE class and exception type (pg/error_class.hpp).
            failure = e.what();
            transient = pg::classify(e) == pg::ErrorClass::Transient;
        } catch (const boost::system::system_error& e) {
            failure = e.what();
            transient = pg::classify(e) == pg::ErrorClass::Transient;
        }
        session_ = nullptr;
        if (stop_requested_) break;
        if (failure.empty()) continue;
        record_failure(failure);
        if (session.reached_streaming()) previous_.reset();
        auto attached = running->targets.size();
        for (const auto& f : failed_targets) {
            if (leave_out(f.target, transient, f.what, attached, f.stalled_since)) --attached;
        }
        if (attached < running->targets.size()) {
            backoff = config_.reconnect.initial_backoff;
            continue;
        }
        if (!transient) {
            if (another_config(failure)) continue;
            co_return 1;
        }
        if (take_reload()) continue;
        if (session.reached_streaming()) backoff = config_.reconnect.initial_backoff;
        co_await back_off(failure, backoff, rng);
        backoff = std::min(backoff * 2, config_.reconnect.max_backoff);
    }
    stop_deadline_.cancel();
    status_.state = State::Stopping;
    co_return 0;
}

}  // namespace authsync::engine
