// The source role (transport.kind: nats): the slot decoded once, each source transaction's
// changes routed to the targets whose scope they match, and published as frames
// (transport/frame.hpp) to each target's subject; the provider is acknowledged only for what
// the stream has stored (its publish acknowledgements, on the stream's replicas).
//
// Per target, a batch of whole transactions becomes one frame (split in parts when larger than
// the servers' max_payload): its messages are the pgoutput messages as received (Begin, the
// Relation (and Type) messages of the tables it touches, the changes the target's router passes
// on, Commit), so that the sink decodes and maps them with the same code. Each frame names the
// end_lsn of the frame before it on the subject (the chain the sink checks for gaps).
//
// Order: a subject never has two messages in flight (rounds: at most one per subject, then
// every acknowledgement), so that a message lost in a failure is never followed by a later one.
// After a restart the source reads each subject's last message: transactions it covers are not
// published again, and the chain goes on from it (a frame whose parts were not all stored is
// published again whole, with a new epoch). A subject that got nothing for mark_interval()
// gets a mark (a frame without changes, frame.hpp), between batches, so that the stream's
// retention never empties it; only once the provider has answered a status update that asked
// for a reply, so that a session cut off from the slot (another may hold it now) marks nothing.
#include <utility>  // before Asio (Boost 1.74)

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <random>
#include <set>

#include "authsync/core/sql.hpp"
#include "authsync/engine/log.hpp"
#include "authsync/engine/provisioning.hpp"
#include "authsync/engine/role.hpp"
#include "authsync/pg/async_connection.hpp"
#include "authsync/pgoutput/decoder.hpp"
#include "authsync/pgoutput/relation_cache.hpp"
#include "authsync/pipeline/change_router.hpp"
#include "authsync/transport/frame_builder.hpp"
#include "authsync/wire/replication_message.hpp"
#include "jetstream_roles.hpp"
#include "spawned.hpp"

namespace authsync::engine {

using asio::awaitable;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {

// How long a round of publishes may wait for the stream's acknowledgements (a stream leader
// elected again after a node was lost takes a few seconds).
constexpr std::chrono::seconds kPublishDeadline{15};
// Room left in a message for the frame header and NATS's own headers (the message id).
constexpr std::size_t kFrameSlack = 512;

std::string_view text_of(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The relations a change message names.
std::vector<pgoutput::RelationId> relations_of(const pgoutput::Message& m) {
    if (const auto* i = std::get_if<pgoutput::Insert>(&m)) return {i->relation_id};
    if (const auto* u = std::get_if<pgoutput::Update>(&m)) return {u->relation_id};
    if (const auto* d = std::get_if<pgoutput::Delete>(&m)) return {d->relation_id};
    if (const auto* t = std::get_if<pgoutput::Truncate>(&m)) return t->relation_ids;
    return {};
}

class SourceSession : public RoleSession {
public:
    SourceSession(const config::Config& config, EngineStatus& status, asio::any_io_executor ex)
        : config_(config),
          status_(status),
          source_(ex),
          replication_(ex),
          status_timer_(ex),
          mark_timer_(ex),
          mark_every_(mark_interval(config.transport)),
          log_(logger("source")),
          epoch_(std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32)) {
        for (std::size_t i = 0; i < config_.targets.size(); ++i) {
            auto t = std::make_unique<Target>();
            t->index = i;
            t->config = config_.for_target(i);
            t->subject = target_subject(config_, t->name());
            targets_.push_back(std::move(t));
        }
        last_publish_.assign(targets_.size(), Clock::now());
    }
    ~SourceSession() override {
        // A publish still waiting for its acknowledgements ends within its deadline.
        pool_.join();
    }

    awaitable<void> run() override;
    void request_stop() override {
        stop_requested_ = true;
        replication_.cancel();
        status_timer_.cancel();
        mark_timer_.cancel();
    }
    void abort() override {
        stop_requested_ = true;
        status_timer_.cancel();
        mark_timer_.cancel();
        replication_.close();
        source_.close();
    }
    bool reached_streaming() const override { return reached_streaming_; }

private:
    struct Target {
        std::size_t index = 0;
        config::Config config;
        std::optional<pipeline::ChangeRouter> router;
        std::string subject;
        const std::string& name() const { return config.targets.front().name; }
    };

    awaitable<void> prepare();
    awaitable<void> read_chains(Lsn start);
    awaitable<void> stream();
    awaitable<void> handle_xlog(const wire::XLogData& x);
    void commit(const pgoutput::Commit& c, std::string_view bytes);
    awaitable<void> publish_batch();
    awaitable<void> publish_marks();
    awaitable<void> mark_loop();
    bool marks_due() const {
        return !in_transaction_ && frames_->pending_transactions() == 0 &&
               Clock::now() - std::min_element(last_publish_.begin(), last_publish_.end())[0] >=
                   mark_every_;
    }
    // Marks are due and the provider answered since mark_loop() asked it to.
    bool may_mark() const { return answered_ && marks_due(); }
    awaitable<void> send_status(bool reply_requested);
    awaitable<void> status_loop();
    awaitable<std::optional<pg::CopyBuffer>> next_copy_data() {
        if (lookahead_) co_return std::exchange(lookahead_, std::nullopt);
        co_return co_await replication_.read_copy_data();
    }
    bool more_data_waiting() {
        if (!lookahead_) lookahead_ = replication_.try_read_copy_data();
        return lookahead_.has_value();
    }
    bool batch_full() const {
        return frames_->pending_transactions() >= config_.apply.batch_max_rows ||
               frames_->largest_batch_bytes() >= config_.apply.batch_max_bytes;
    }

    config::Config config_;
    EngineStatus& status_;
    pg::AsyncConnection source_;
    pg::AsyncConnection replication_;
    asio::steady_timer status_timer_;
    asio::steady_timer mark_timer_;
    std::chrono::milliseconds mark_every_;
    std::vector<Clock::time_point> last_publish_;  // by target: its last frame or mark
    std::uint64_t marks_ = 0;                      // published in this session
    // mark_loop() asked the provider for a reply; something came from it since.
    bool pinged_ = false;
    bool answered_ = false;
    asio::thread_pool pool_{1};  // JetStream's blocking calls
    std::unique_ptr<transport::JetStream> js_;
    std::shared_ptr<spdlog::logger> log_;
    std::uint64_t epoch_;
    std::optional<transport::FrameBuilder> frames_;

    pgoutput::Decoder decoder_;
    pgoutput::RelationCache relations_;
    std::vector<std::unique_ptr<Target>> targets_;
    std::vector<pipeline::Operation> operations_;  // scratch
    std::optional<pg::CopyBuffer> lookahead_;

    bool in_transaction_ = false;
    Lsn txn_final_lsn_;
    Lsn received_;
    Lsn acknowledged_;  // stored by the stream (or holding nothing for any target)

    bool stop_requested_ = false;
    bool streaming_ = false;
    bool reached_streaming_ = false;
};

awaitable<void> SourceSession::run() {
    status_.state = State::Starting;
    status_.transport.role = "source";
    co_await prepare();
    if (stop_requested_) co_return;
    streaming_ = true;
    // It uses the session: run() returns only once it has ended.
    Spawned loops(co_await asio::this_coro::executor);
    loops.spawn(status_loop(), {});
    loops.spawn(mark_loop(), {});
    std::exception_ptr failure;
    try {
        co_await stream();
    } catch (...) {
        failure = std::current_exception();
    }
    streaming_ = false;
    status_timer_.cancel();
    mark_timer_.cancel();
    co_await loops.wait();
    if (failure) std::rethrow_exception(failure);
}

awaitable<void> SourceSession::prepare() {
    const auto& src = config_.source;
    co_await connect_and_resolve(source_, config_, "authsync");
    for (auto& t : targets_) {
        t->config = config_.for_target(t->index);  // its lookups resolved
        t->router.emplace(t->config.mappings, t->config.composites, 1);
    }
    co_await ensure_publication(source_, config_);

    js_ = co_await off_thread(pool_, [this] {
        return std::make_unique<transport::JetStream>(
            nats_config(config_, "source " + config_.source.slot));
    });
    co_await off_thread(pool_,
                        [this] { js_->ensure_stream(stream_spec(config_), kStreamSetupDeadline); });
    frames_.emplace(
        targets_.size(),
        js_->max_payload() > 2 * kFrameSlack ? js_->max_payload() - kFrameSlack : kFrameSlack,
        epoch_);

    auto slot = co_await find_slot(source_, src.slot);
    if (slot && slot->plugin != "pgoutput") {
        throw FatalError(
            fmt::format("slot {} uses plugin {}, authsync needs pgoutput", src.slot, slot->plugin));
    }
    if (slot && slot->wal_status == "lost") {
        throw FatalError(fmt::format(
            "slot {} is lost (the provider removed WAL it needed): the stream misses changes; "
            "drop the slot, and each sink copies its target again",
            src.slot));
    }
    if (!slot) {
        if (!src.create_slot) {
            throw FatalError(
                fmt::format("slot {} does not exist on the source (run `authsync init`, or set "
                            "source.create_slot)",
                            src.slot));
        }
        // No copy here: each sink copies its own target (a temporary slot's snapshot) and
        // applies the stream from there.
        co_await create_slot(source_, src.slot);
        slot = co_await find_slot(source_, src.slot);
        if (!slot) throw FatalError(fmt::format("slot {} vanished after its creation", src.slot));
        log_->info("created slot {}", src.slot);
    }
    if (!slot->confirmed_flush) {
        throw FatalError(fmt::format("slot {} has no confirmed_flush_lsn yet", src.slot));
    }
    const Lsn start = *slot->confirmed_flush;
    co_await read_chains(start);
    received_ = acknowledged_ = start;
    status_.received_lsn = status_.applied_lsn = status_.flushed_lsn = start;

    co_await replication_.connect(src.dsn, "authsync", true);
    const auto command = fmt::format(
        "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {})",
        quote_identifier(src.slot), start.to_string(),
        quote_literal(quote_identifier(src.publication)));
    co_await replication_.start_copy_both(command);
    status_.state = State::Streaming;
    for (const auto& t : targets_) {
        auto& shown = status_.targets[t->name()];
        shown.state = "streaming";
        shown.error.clear();
        shown.durable_lsn = frames_->chain(t->index);
    }
    reached_streaming_ = true;
    log_->info("publishing slot={} from lsn={} to stream {} ({} targets)", src.slot,
               start.to_string(), config_.transport.stream, targets_.size());
}

// Each subject's last message: where its chain goes on, and what needs no publishing again.
awaitable<void> SourceSession::read_chains(Lsn start) {
    for (auto& t : targets_) {
        auto last = co_await off_thread(
            pool_, [this, &t] { return js_->last_message(config_.transport.stream, t->subject); });
        if (!last) {
            // Nothing stored for it (a new target, or all of it aged out): the chain starts
            // here; a sink that holds less finds a gap and copies its target again.
            frames_->start_target(t->index, start, Lsn{});
            continue;
        }
        transport::Frame f;
        try {
            f = transport::decode_frame(*last);
        } catch (const ProtocolError& e) {
            throw FatalError(fmt::format("the last message on {} is not an authsync frame: {}",
                                         t->subject, e.what()));
        }
        frames_->resume_target(t->index, f);
        if (f.part + 1 != f.parts) {
            // Its source died before its last part: it is published again, whole.
            log_->info(
                "target {}: the last frame on its subject lacks parts after {} of {}; "
                "publishing its transactions again",
                t->name(), f.part + 1, f.parts);
        }
        log_->debug("target {}: subject {} holds up to {}", t->name(), t->subject,
                    frames_->chain(t->index).to_string());
    }
}

awaitable<void> SourceSession::stream() {
    for (;;) {
        // Whole transactions wait and nothing more is buffered: publish them now.
        if (frames_->pending_transactions() > 0 && !in_transaction_ && !more_data_waiting()) {
            co_await publish_batch();
            continue;
        }
        if (may_mark()) co_await publish_marks();
        std::optional<pg::CopyBuffer> data;
        try {
            data = co_await next_copy_data();
        } catch (const boost::system::system_error& e) {
            if (e.code() != asio::error::operation_aborted) throw;
        }
        if (stop_requested_) break;
        if (!data) throw pg::PgError::connection_loss("the provider ended the replication stream");
        answered_ = pinged_;
        auto message = wire::decode_server_message(data->bytes());
        if (auto* x = std::get_if<wire::XLogData>(&message)) {
            co_await handle_xlog(*x);
            if (batch_full() && !in_transaction_) co_await publish_batch();
        } else {
            const auto& k = std::get<wire::PrimaryKeepalive>(message);
            status_.provider_wal_lsn = std::max(status_.provider_wal_lsn, k.wal_end);
            // Everything received is stored: what the provider sent up to its WAL end holds
            // nothing more for any target.
            if (!in_transaction_ && frames_->pending_transactions() == 0 && !lookahead_) {
                acknowledged_ = std::max(acknowledged_, k.wal_end);
            }
            if (k.reply_requested) co_await send_status(false);
        }
    }
    status_.state = State::Stopping;
    // Clean stop: whole transactions are published; a half-received one comes again.
    if (!in_transaction_ && frames_->pending_transactions() > 0) co_await publish_batch();
    co_await send_status(false);
    log_->info("stopped at lsn={}", acknowledged_.to_string());
}

awaitable<void> SourceSession::handle_xlog(const wire::XLogData& x) {
    status_.provider_wal_lsn = std::max(status_.provider_wal_lsn, x.wal_end);
    const auto bytes = text_of(x.payload);
    auto message = decoder_.decode(x.payload);
    if (auto* b = std::get_if<pgoutput::Begin>(&message)) {
        if (in_transaction_) throw ProtocolError("Begin message inside a transaction");
        in_transaction_ = true;
        txn_final_lsn_ = b->final_lsn;
        frames_->begin(bytes);
        if (!status_.oldest_pending_commit_time) {
            status_.oldest_pending_commit_time = b->commit_time;
        }
    } else if (auto* c = std::get_if<pgoutput::Commit>(&message)) {
        commit(*c, bytes);
    } else if (auto* r = std::get_if<pgoutput::Relation>(&message)) {
        relations_.apply(*r);
        std::vector<std::uint32_t> types;
        for (const auto& column : r->columns) types.push_back(column.type_id);
        frames_->relation(r->relation_id, bytes, std::move(types));
        for (auto& t : targets_) t->router->bind(*r);
    } else if (auto* type = std::get_if<pgoutput::Type>(&message)) {
        relations_.apply(*type);
        frames_->type(type->type_id, bytes);
    } else if (std::holds_alternative<pgoutput::LogicalMessage>(message) ||
               std::holds_alternative<pgoutput::Origin>(message)) {
        // Not for the sinks.
    } else {
        if (!in_transaction_) {
            throw ProtocolError(
                fmt::format("{} message outside a transaction", pgoutput::message_name(message)));
        }
        const auto relations = relations_of(message);
        for (auto& t : targets_) {
            operations_.clear();
            t->router->route(message, relations_, operations_);
            if (!operations_.empty()) frames_->change(t->index, relations, bytes);
        }
    }
    co_return;
}

void SourceSession::commit(const pgoutput::Commit& c, std::string_view bytes) {
    if (!in_transaction_) throw ProtocolError("Commit message outside a transaction");
    if (c.commit_lsn != txn_final_lsn_) {
        throw ProtocolError(
            fmt::format("Commit at {} closes a transaction that began with final_lsn {}",
                        c.commit_lsn.to_string(), txn_final_lsn_.to_string()));
    }
    in_transaction_ = false;
    received_ = std::max(received_, c.end_lsn);
    status_.received_lsn = received_;
    frames_->commit(bytes, c.end_lsn);
    status_.transport.unacked = frames_->pending_transactions();
}

// Publishes every target's batch, then acknowledges the provider up to the batch's last
// transaction: each subject gets its parts one round at a time.
awaitable<void> SourceSession::publish_batch() {
    const auto txns = frames_->pending_transactions();
    const auto end = frames_->pending_end();
    auto frames = frames_->take();
    std::size_t rounds = 0;
    for (const auto& [t, parts] : frames) rounds = std::max(rounds, parts.size());
    std::uint64_t bytes = 0;
    for (std::size_t round = 0; round < rounds; ++round) {
        std::vector<transport::Outgoing> out;
        for (const auto& [t, parts] : frames) {
            if (round >= parts.size()) continue;
            const auto& f = parts[round];
            const auto& name = targets_[t]->name();
            out.push_back({targets_[t]->subject, transport::encode_frame(f),
                           transport::frame_message_id(config_.source.slot, name, f)});
            bytes += out.back().data.size();
            last_publish_[t] = Clock::now();
        }
        co_await off_thread(pool_, [this, &out] { js_->publish_all(out, kPublishDeadline); });
        status_.transport.frames += out.size();
    }
    for (const auto& [t, parts] : frames) {
        status_.targets[targets_[t]->name()].durable_lsn = frames_->chain(t);
    }
    status_.transport.bytes += bytes;
    acknowledged_ = std::max(acknowledged_, end);
    status_.transport.unacked = frames_->pending_transactions();
    status_.txns_applied += txns;
    ++status_.batches;
    status_.oldest_pending_commit_time.reset();
    status_.applied_lsn = acknowledged_;
    status_.last_applied_at = PgTimestamp::now();
    co_await send_status(false);
}

// A mark to each subject that got nothing for mark_every_, in one round (a subject has no
// other message in flight: no batch is).
awaitable<void> SourceSession::publish_marks() {
    pinged_ = answered_ = false;  // the next round asks again
    std::vector<transport::Outgoing> out;
    for (const auto& t : targets_) {
        if (Clock::now() - last_publish_[t->index] < mark_every_) continue;
        last_publish_[t->index] = Clock::now();
        const auto mark = frames_->mark(t->index, acknowledged_);
        if (!mark) continue;  // nothing covered past its chain yet: the next round looks again
        out.push_back(
            {t->subject, transport::encode_frame(*mark),
             transport::mark_message_id(config_.source.slot, t->name(), *mark, ++marks_)});
    }
    if (out.empty()) co_return;
    co_await off_thread(pool_, [this, &out] { js_->publish_all(out, kPublishDeadline); });
    status_.transport.marks += out.size();
    log_->debug("published {} marks", out.size());
}

// When marks are due, asks the provider for a reply (a keepalive). Its answer shows that this
// session still holds the slot, and wakes the reader, which marks between batches (may_mark).
// A session cut off from the provider (its walsender ended for silence, another session holding
// the slot now and publishing past this one's chains) gets no answer and marks nothing.
awaitable<void> SourceSession::mark_loop() {
    while (streaming_) {
        mark_timer_.expires_after(mark_every_ / 2);
        boost::system::error_code ec;
        co_await mark_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
        if (!streaming_) break;
        if (!marks_due()) continue;
        try {
            pinged_ = true;
            answered_ = false;
            co_await send_status(true);
        } catch (const std::exception& e) {
            log_->debug("status update asking for a reply: {}", e.what());
        }
    }
}

awaitable<void> SourceSession::send_status(bool reply_requested) {
    if (!replication_.is_open()) co_return;
    wire::StandbyStatusUpdate u;
    u.write = std::max(received_, acknowledged_);
    u.flush = acknowledged_;
    u.apply = acknowledged_;
    u.send_time = PgTimestamp::now();
    u.reply_requested = reply_requested;
    co_await replication_.put_copy_data(wire::encode_standby_status_update(u));
    status_.flushed_lsn = u.flush;
    status_.applied_lsn = std::max(status_.applied_lsn, acknowledged_);
}

awaitable<void> SourceSession::status_loop() {
    while (streaming_) {
        status_timer_.expires_after(config_.source.status_interval);
        boost::system::error_code ec;
        co_await status_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
        if (!streaming_) break;
        try {
            co_await send_status(false);
        } catch (const std::exception& e) {
            log_->debug("status update: {}", e.what());
        }
    }
}

}  // namespace

bool has_jetstream() {
    return true;
}

std::unique_ptr<RoleSession> make_source_session(const config::Config& config, EngineStatus& status,
                                                 asio::any_io_executor ex) {
    return std::make_unique<SourceSession>(config, status, std::move(ex));
}

}  // namespace authsync::engine
