// A sink (`authsync sink --target NAME`, transport.kind: nats): one target's subject of the
// JetStream stream applied to that target's database, exactly once.
//
// It takes the target's advisory lock for the slot (the one `authsync run` takes: one writer
// per target, whichever process or machine it runs on), reads the checkpoint, and without one
// copies the target from a temporary slot's snapshot (join.hpp), as a joining target does. Its
// durable consumer is made afresh at each start, so that the subject comes in stream order;
// SinkCursor skips what the checkpoint holds, gathers parts, and finds gaps (frames gone to the
// stream's retention), which a new copy repairs. Each fetched batch is applied in one target
// transaction with its checkpoint, the same TargetWriter as the in-process engine; JetStream
// is acknowledged (an ack covers the messages before it) only once the target's WAL flush has
// passed that commit.
#include <utility>  // before Asio (Boost 1.74)

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>

#include "authsync/core/error.hpp"
#include "authsync/engine/join.hpp"
#include "authsync/engine/log.hpp"
#include "authsync/engine/provisioning.hpp"
#include "authsync/engine/role.hpp"
#include "authsync/engine/target_writer.hpp"
#include "authsync/pgoutput/decoder.hpp"
#include "authsync/pgoutput/relation_cache.hpp"
#include "authsync/pipeline/change_router.hpp"
#include "authsync/transport/sink_cursor.hpp"
#include "jetstream_roles.hpp"

namespace authsync::engine {

using asio::awaitable;
using asio::use_awaitable;

namespace {

// Frames per fetch (one target transaction at most); the wait for the first of them. A
// frame that arrives meanwhile is delivered at once: the wait bounds only how often an idle
// target asks (and how long a stop waits), a pull request per 2 s.
constexpr int kFetchBatch = 256;
constexpr std::chrono::milliseconds kFetchWait{2000};
constexpr std::chrono::seconds kAckTimeout{5};
// While nothing is delivered, how often the consumer is asked whether it still exists.
constexpr std::chrono::seconds kProbeEvery{2};
constexpr int kStuckProbes = 3;

class SinkSession : public RoleSession {
public:
    // `config`: the whole config; `index`: the sink's target in it.
    SinkSession(const config::Config& config, std::size_t index, EngineStatus& status,
                transport::RereadMemory& reread, asio::any_io_executor ex)
        : config_(config.for_target(index)),
          index_(index),
          status_(status),
          reread_(reread),
          source_(ex),
          writer_(config_, 0, 0, 0, ex),
          log_(logger("sink")) {}
    ~SinkSession() override { pool_.join(); }

    awaitable<void> run() override;
    void request_stop() override { stop_requested_ = true; }
    void abort() override {
        stop_requested_ = true;
        writer_.connection().cancel_query();
        writer_.close();
        source_.close();
    }
    bool reached_streaming() const override { return reached_streaming_; }

private:
    // A message delivered and not acknowledged yet, in delivery order.
    struct Unacked {
        transport::Delivered message;
        Lsn end_lsn;        // its frame's
        bool done = false;  // applied (or skipped): acknowledged once its commit is durable
        std::optional<Lsn> durable_at;  // the target WAL point it waits for, once known
    };

    const std::string& name() const { return config_.targets.front().name; }
    awaitable<void> prepare();
    awaitable<Lsn> take_lanes_over(Lsn checkpoint);
    awaitable<void> copy();
    // False when a gap was found and the target copied again (the session ends).
    awaitable<bool> take(std::vector<transport::Delivered> batch);
    awaitable<void> apply_message(std::string_view bytes);
    awaitable<void> commit();
    awaitable<void> acknowledge_durable(bool ask_flush);
    // Whether the subject's last frame ends past the position (a consumer that says nothing
    // is pending may still be behind: seen after a whole cluster's restart).
    awaitable<bool> stream_is_ahead();

    config::Config config_;
    std::size_t index_;
    EngineStatus& status_;
    transport::RereadMemory& reread_;  // the role's, across sessions
    pg::AsyncConnection source_;
    TargetWriter writer_;
    asio::thread_pool pool_{1};  // JetStream's blocking calls
    std::unique_ptr<transport::JetStream> js_;
    std::unique_ptr<transport::Consumer> consumer_;
    std::shared_ptr<spdlog::logger> log_;

    pgoutput::Decoder decoder_;
    pgoutput::RelationCache relations_;
    std::optional<pipeline::ChangeRouter> router_;
    std::vector<pipeline::Operation> operations_;
    std::optional<transport::SinkCursor> cursor_;  // none until the first frame (snapshot: never)
    Lsn skip_below_;  // transactions committed before it are in the target (checkpoint, copy)
    // Lanes taken over apart (take_lanes_over): each lane's checkpoint, by lane; and the
    // highest, past which they are made one. Empty otherwise.
    std::vector<Lsn> lane_floors_;
    Lsn lanes_passed_at_;

    bool in_transaction_ = false;
    bool skipping_ = false;
    Lsn txn_final_lsn_;
    PgTimestamp txn_commit_time_;
    // Applied in the open target transaction, not committed yet.
    std::optional<Lsn> pending_end_;
    PgTimestamp pending_commit_time_;
    std::size_t pending_txns_ = 0;

    std::deque<Unacked> unacked_;
    Lsn commit_point_;  // the target WAL point of the newest commit (or of the start)
    Lsn flushed_;       // the target's WAL flush position, as last read

    bool stop_requested_ = false;
    bool reached_streaming_ = false;
};

awaitable<void> SinkSession::run() {
    status_.state = State::Starting;
    status_.transport.role = "sink";
    co_await prepare();
    if (stop_requested_) co_return;
    status_.state = State::Streaming;
    status_.targets[name()].state = "streaming";
    reached_streaming_ = true;
    log_->info("target {}: applying {} from stream {} at {}", name(),
               target_subject(config_, name()), config_.transport.stream, skip_below_.to_string());
    auto last_probe = std::chrono::steady_clock::now();
    int stuck_probes = 0;
    while (!stop_requested_) {
        auto batch = co_await off_thread(
            pool_, [this] { return consumer_->fetch(kFetchBatch, kFetchWait); });
        const bool delivered = !batch.empty();
        if (delivered) {
            stuck_probes = 0;
            status_.transport.pending = batch.back().pending();
            if (!co_await take(std::move(batch))) co_return;
            if (pending_end_) co_await commit();
        } else if (std::chrono::steady_clock::now() - last_probe >= kProbeEvery) {
            // Nothing came: a fetch from a consumer that is gone, or without a leader, only
            // times out. Asking for its state fails then, and the session starts again. One
            // that says frames wait, probe after probe, while none comes (seen after a whole
            // cluster's restart) is given up the same way.
            last_probe = std::chrono::steady_clock::now();
            status_.transport.pending =
                co_await off_thread(pool_, [this] { return consumer_->pending(); });
            // (Not in a conditional expression: GCC 12 mishandles co_await inside one.)
            bool behind = status_.transport.pending > 0;
            if (!behind) behind = co_await stream_is_ahead();
            stuck_probes = behind ? stuck_probes + 1 : 0;
            if (stuck_probes >= kStuckProbes) {
                throw transport::TransportError(
                    fmt::format("target {}: frames wait on its subject and its consumer "
                                "delivers none; making a new one",
                                name()),
                    true);
            }
        }
        co_await acknowledge_durable(!unacked_.empty());
    }
    // A clean stop: what was applied is committed (each batch is); acknowledge what is durable.
    co_await acknowledge_durable(true);
    status_.state = State::Stopping;
}

awaitable<void> SinkSession::prepare() {
    const auto& slot = config_.source.slot;
    auto& target = writer_.connection();
    co_await writer_.connect();
    if (!co_await try_lock_slot(target, slot)) {
        throw SlotBusyError(fmt::format(
            "target {}: another instance holds slot {} in this database (another sink of it, "
            "or `authsync run` without the transport)",
            name(), slot));
    }
    const auto unusable_mirrors = co_await inspect_mirrors(target, config_);
    co_await ensure_target_schema(target, config_);
    auto checkpoint = co_await read_checkpoint(target, slot);
    if (checkpoint) checkpoint->end_lsn = co_await take_lanes_over(checkpoint->end_lsn);
    if (checkpoint && !unusable_mirrors.empty()) {
        throw FatalError(
            fmt::format("target {}: {}: the mirrors must be copied from the "
                        "provider again; delete its checkpoint row to copy it",
                        name(), unusable_mirrors.front()));
    }
    co_await connect_and_resolve(source_, config_, "authsync sink");
    // Lanes taken over are routed as they were, for what each lane's row covers.
    router_.emplace(config_.mappings, config_.composites,
                    std::max<std::size_t>(1, lane_floors_.size()));

    js_ = co_await off_thread(pool_, [this] {
        return std::make_unique<transport::JetStream>(nats_config(config_, "sink " + name()));
    });
    // The sink may start before the source: the stream is the same either way.
    co_await off_thread(pool_,
                        [this] { js_->ensure_stream(stream_spec(config_), kStreamSetupDeadline); });

    if (checkpoint) {
        skip_below_ = checkpoint->end_lsn;
        cursor_.emplace(skip_below_);
    } else if (config_.source.snapshot == config::Snapshot::Initial) {
        co_await copy();
        if (stop_requested_) co_return;
    } else {
        log_->info(
            "target {}: no checkpoint and source.snapshot: never: applying from the "
            "first frame on its subject",
            name());
    }
    // Only a copy needs the provider again: a sink of many targets keeps no connection there.
    source_.close();
    auto [insert_point, flush] = co_await writer_.prepare_streaming();
    // A checkpoint committed asynchronously by a sink that died may not be durable yet: what
    // it covers is acknowledged only once the target's flush passes where its WAL is now.
    commit_point_ = insert_point;
    flushed_ = flush;
    consumer_ = co_await off_thread(pool_, [this] {
        return std::make_unique<transport::Consumer>(js_->session_consumer(
            config_.transport.stream, target_subject(config_, name()), config_.transport.ack_wait,
            std::max(std::chrono::seconds(30), 2 * config_.transport.ack_wait)));
    });
}

// Left by `authsync run` with apply.lanes: each lane holds its own keys up to its own row.
// Rows at one position (a clean stop) are made one. Rows apart (a lane killed ahead of
// another) are kept: the sink starts from the lowest, routes as those lanes did, skips each
// change its lane's row covers, and raises every row with each commit, until it has passed
// the highest (then they are made one). Returns where the sink starts.
awaitable<Lsn> SinkSession::take_lanes_over(Lsn checkpoint) {
    const auto& slot = config_.source.slot;
    auto& target = writer_.connection();
    const auto lanes = co_await read_lane_checkpoints(target, slot);
    if (lanes.size() < 2) co_return checkpoint;
    Lsn lowest = checkpoint;
    Lsn highest = checkpoint;
    for (const auto& [lane, c] : lanes) {
        if (!c.end_lsn.is_valid()) continue;  // has committed nothing: skips nothing
        lowest = std::min(lowest, c.end_lsn);
        highest = std::max(highest, c.end_lsn);
    }
    if (lowest == highest) {
        co_await collapse_lane_checkpoints(target, slot, lowest);
        log_->info("target {}: {} apply lanes' checkpoints made one at {}", name(), lanes.size(),
                   lowest.to_string());
        co_return lowest;
    }
    lane_floors_.assign(lanes.rbegin()->first + 1, Lsn{});
    for (const auto& [lane, c] : lanes) lane_floors_[lane] = c.end_lsn;
    lanes_passed_at_ = highest;
    writer_.checkpoint_every_lane(true);
    log_->info(
        "target {}: {} apply lanes stopped apart ({} to {}): applying from the lowest, each "
        "lane's keys past its own checkpoint only",
        name(), lane_floors_.size(), lowest.to_string(), highest.to_string());
    co_return lowest;
}

// The target copied from a temporary slot's snapshot: its checkpoint is the copy's point.
awaitable<void> SinkSession::copy() {
    status_.state = State::Snapshotting;
    status_.targets[name()].state = "copying";
    ++status_.transport.copies;
    skip_below_ =
        co_await copy_from_own_snapshot(source_, writer_.connection(), config_, index_, status_);
    cursor_.emplace(skip_below_);
    status_.targets[name()].durable_lsn = skip_below_;
}

awaitable<bool> SinkSession::take(std::vector<transport::Delivered> batch) {
    using Action = transport::SinkCursor::Action;
    for (auto& message : batch) {
        if (message.deliveries() > 1) ++status_.transport.redeliveries;
        transport::Frame frame;
        try {
            frame = transport::decode_frame(message.data());
        } catch (const ProtocolError& e) {
            throw ProtocolError(fmt::format("target {}: message {} of stream {}: {}", name(),
                                            message.stream_sequence(), config_.transport.stream,
                                            e.what()));
        }
        const auto bytes = message.data().size();
        const bool oldest = message.consumer_sequence() == 1;
        unacked_.push_back({std::move(message), frame.end_lsn, false, std::nullopt});
        // No checkpoint, snapshot: never: from the first transaction stored whole (a part
        // alone before it is passed, never taken for a gap: `never` refuses a copy).
        if (!cursor_) cursor_.emplace();
        const bool unpositioned = !cursor_->positioned();
        const Lsn prev = frame.prev_end_lsn;
        const auto action = cursor_->offer(std::move(frame), oldest);
        if (unpositioned && cursor_->positioned()) skip_below_ = cursor_->position();
        switch (reread_.settle(action, cursor_->position())) {
            case Action::Skip:
                unacked_.back().done = true;
                ++status_.transport.skipped;
                break;
            case Action::Hold: break;
            case Action::Reread:
                // Nothing is acknowledged past the position, so a new consumer of the subject
                // delivers the frames in between again, in stream order, if the stream has them.
                throw transport::TransportError(
                    fmt::format("target {}: frames between {} and {} did not come before the "
                                "next (delivered out of order, or lost with a connection): "
                                "reading the subject again from the checkpoint",
                                name(), cursor_->position().to_string(), prev.to_string()),
                    true);
            case Action::Gap: {
                log_->warn(
                    "target {}: the stream lacks its frames between {} and {} (aged out of the "
                    "stream's retention, or published before its copy): copying it again",
                    name(), cursor_->position().to_string(), prev.to_string());
                // Its checkpoint goes, so that the next session copies it (prepare), however
                // this one ends: nothing is applied past a gap.
                if (writer_.has_work()) co_await writer_.rollback();
                co_await forget_checkpoint(writer_.connection(), config_.source.slot);
                co_return false;
            }
            case Action::Apply: {
                auto parts = cursor_->take();
                for (const auto& part : parts) {
                    for (const auto& m : part.messages) co_await apply_message(m);
                }
                if (in_transaction_) {
                    throw ProtocolError(
                        fmt::format("target {}: the frame ending at {} ends inside a transaction",
                                    name(), parts.back().end_lsn.to_string()));
                }
                cursor_->applied(parts.back().end_lsn);
                for (auto& u : unacked_) u.done = true;
                if (parts.back().messages.empty()) {
                    ++status_.transport.marks;  // nothing to apply: it moves the position only
                } else {
                    ++status_.transport.frames;
                    status_.transport.bytes += bytes;
                }
                break;
            }
        }
    }
    status_.transport.unacked = unacked_.size();
    co_return true;
}

awaitable<void> SinkSession::apply_message(std::string_view bytes) {
    auto message = decoder_.decode(std::as_bytes(std::span(bytes.data(), bytes.size())));
    if (auto* b = std::get_if<pgoutput::Begin>(&message)) {
        if (in_transaction_) throw ProtocolError("Begin message inside a transaction");
        in_transaction_ = true;
        txn_final_lsn_ = b->final_lsn;
        txn_commit_time_ = b->commit_time;
        skipping_ = b->final_lsn < skip_below_;
        writer_.set_source_transaction(b->final_lsn);
    } else if (auto* c = std::get_if<pgoutput::Commit>(&message)) {
        if (!in_transaction_) throw ProtocolError("Commit message outside a transaction");
        if (c->commit_lsn != txn_final_lsn_) {
            throw ProtocolError(
                fmt::format("Commit at {} closes a transaction that began with final_lsn {}",
                            c->commit_lsn.to_string(), txn_final_lsn_.to_string()));
        }
        in_transaction_ = false;
        if (!skipping_) {
            pending_end_ = c->end_lsn;
            pending_commit_time_ = c->commit_time;
            ++pending_txns_;
        }
    } else if (auto* r = std::get_if<pgoutput::Relation>(&message)) {
        relations_.apply(*r);
        router_->bind(*r);
    } else if (auto* t = std::get_if<pgoutput::Type>(&message)) {
        relations_.apply(*t);
    } else if (std::holds_alternative<pgoutput::LogicalMessage>(message) ||
               std::holds_alternative<pgoutput::Origin>(message)) {
        // The source does not forward them.
    } else {
        if (!in_transaction_) {
            throw ProtocolError(
                fmt::format("{} message outside a transaction", pgoutput::message_name(message)));
        }
        if (skipping_) co_return;
        operations_.clear();
        router_->route(message, relations_, operations_);
        for (auto& op : operations_) {
            if (!lane_floors_.empty() && txn_final_lsn_ < lane_floors_[op.writer]) continue;
            if (std::holds_alternative<pipeline::Truncate>(op.change)) {
                co_await writer_.truncate(op, txn_commit_time_);
                continue;
            }
            writer_.add(std::move(op), txn_commit_time_);
            if (writer_.must_flush_chunk()) co_await writer_.flush_chunk();
        }
    }
}

awaitable<bool> SinkSession::stream_is_ahead() {
    if (!cursor_ || unacked_.size() > 0) co_return false;
    auto last = co_await off_thread(pool_, [this] {
        return js_->last_message(config_.transport.stream, target_subject(config_, name()));
    });
    if (!last) co_return false;
    co_return transport::decode_frame(*last).end_lsn > cursor_->position();
}

// The transactions applied since the last commit, committed with their checkpoint.
awaitable<void> SinkSession::commit() {
    const auto started = std::chrono::steady_clock::now();
    co_await writer_.send_commit(pending_end_, pending_commit_time_);
    const auto positions = co_await writer_.finish_commit();
    if (positions.committed_at) commit_point_ = std::max(commit_point_, *positions.committed_at);
    flushed_ = std::max(flushed_, positions.flushed);
    status_.dead_letters += writer_.take_dead_letters();
    status_.target_round_trips += writer_.take_round_trips();
    auto& by_target = status_.targets[name()].rows_applied;
    for (const auto& [table, rows] : writer_.take_counts()) {
        for (auto* total : {&status_.rows_applied[table], &by_target[table]}) {
            total->upserts += rows.upserts;
            total->deletes += rows.deletes;
        }
    }
    if (!lane_floors_.empty() && *pending_end_ >= lanes_passed_at_) {
        // Every lane's row is at this commit now: one row from here on.
        co_await collapse_lane_checkpoints(writer_.connection(), config_.source.slot,
                                           *pending_end_);
        writer_.checkpoint_every_lane(false);
        lane_floors_.clear();
        log_->info("target {}: past every apply lane's checkpoint: one checkpoint at {}", name(),
                   pending_end_->to_string());
    }
    status_.received_lsn = *pending_end_;
    status_.applied_lsn = *pending_end_;
    status_.last_commit_time = pending_commit_time_;
    status_.last_applied_at = PgTimestamp::now();
    status_.txns_applied += pending_txns_;
    ++status_.batches;
    status_.batch_apply_seconds.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    pending_end_.reset();
    pending_txns_ = 0;
}

// Acknowledges, with one ack for all before it, the longest run of delivered messages that
// are done and durable in the target.
awaitable<void> SinkSession::acknowledge_durable(bool ask_flush) {
    for (auto& u : unacked_) {
        if (u.done && !u.durable_at) u.durable_at = commit_point_;
    }
    auto ackable = [this] {
        std::size_t n = 0;
        while (n < unacked_.size() && unacked_[n].done && *unacked_[n].durable_at <= flushed_) ++n;
        return n;
    };
    if (ackable() < unacked_.size() && ask_flush && unacked_.front().done) {
        flushed_ = std::max(flushed_, co_await writer_.flush_lsn());
    }
    const auto n = ackable();
    if (n == 0) co_return;
    auto& last = unacked_[n - 1].message;
    co_await off_thread(pool_, [&last] { last.ack(kAckTimeout); });
    for (std::size_t i = 0; i < n; ++i) {
        status_.flushed_lsn = std::max(status_.flushed_lsn, unacked_[i].end_lsn);
    }
    unacked_.erase(unacked_.begin(), unacked_.begin() + static_cast<std::ptrdiff_t>(n));
    status_.transport.unacked = unacked_.size();
    status_.targets[name()].durable_lsn = status_.flushed_lsn;
}

}  // namespace

std::unique_ptr<RoleSession> make_sink_session(const config::Config& config, std::size_t index,
                                               EngineStatus& status,
                                               transport::RereadMemory& reread,
                                               asio::any_io_executor ex) {
    return std::make_unique<SinkSession>(config, index, status, reread, std::move(ex));
}

}  // namespace authsync::engine
