// TargetWriter: one connection into the target, applying one lane's share of the stream.
//
// It owns that connection's transaction: the lane's batch (pipeline::LaneBatch), the
// statements sent and not yet read back, a savepoint per statement, the one-by-one retry of a
// statement the target rejects (apply.on_error: stop names the key; dead_letter sets the
// change aside in authsync.dead_letter), the recomputation of composite rows its mirror
// changes affected, and the checkpoint + COMMIT of its own checkpoint row. What becomes of the
// WAL position a commit reports is the FlushTracker's business, not the writer's.
//
// Every query goes through libpq's pipeline mode. A batch that fits one chunk goes with its
// checkpoint and COMMIT in one round trip (send_commit, then finish_commit reads the results:
// in between the session decodes the next batch while the target executes this one). A larger
// one goes chunk by chunk into the open transaction while the stream goes on, each statement
// in a pipeline with a savepoint of its own and its RELEASE; its results are read just before
// the next query on the connection (settle).
#pragma once

#include <utility>  // before Asio (Boost 1.74)

#include <boost/asio/awaitable.hpp>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "authsync/apply/composite.hpp"
#include "authsync/config/config.hpp"
#include "authsync/pg/async_connection.hpp"
#include "authsync/pipeline/lane_batch.hpp"

namespace spdlog {
class logger;
}

namespace authsync::engine {

namespace asio = boost::asio;

// What a COMMIT left: the target's WAL position after it (its durable_point), and the
// target's WAL flush position at that moment.
struct CommitPositions {
    std::optional<Lsn> committed_at;  // with a checkpoint written
    Lsn flushed;
    std::size_t rows = 0;  // changes the transaction carried (its chunks included)
};

class TargetWriter {
public:
    // `config`: its target's (Config::for_target), outliving the writer. `target`: its index
    // among the config's targets; `lane`: among that target's lanes; `id`: among all writers
    // (the FlushTracker's).
    TargetWriter(const config::Config& config, std::size_t target, pipeline::WriterId lane,
                 pipeline::WriterId id, asio::any_io_executor ex);

    std::size_t target() const { return target_index_; }
    pipeline::WriterId lane() const { return lane_; }
    pipeline::WriterId id() const { return id_; }
    pg::AsyncConnection& connection() { return target_; }
    // Connects; lz4 for raw_json's TOAST where the server has it.
    asio::awaitable<void> connect();
    // The session settings for streaming (synchronous_commit as configured) and the target's
    // WAL geometry; returns the target's (durable insert point, flush position) now.
    asio::awaitable<std::pair<Lsn, Lsn>> prepare_streaming();
    void close() { target_.close(); }

    // The source transaction being received: dead letters name its commit LSN.
    void set_source_transaction(Lsn final_lsn) { txn_final_lsn_ = final_lsn; }
    // Takes the operation's row image (it is not copied). A change of the source transaction
    // being received: a dead letter of it names that transaction's commit LSN.
    void add(pipeline::Operation&& op, PgTimestamp commit_time) {
        batch_.add(std::move(op), commit_time, txn_final_lsn_);
    }
    // A TRUNCATE, in order: what came before it goes in first.
    asio::awaitable<void> truncate(const pipeline::Operation& op, PgTimestamp commit_time);
    // Whether the batch has reached apply.batch_max_rows or apply.batch_max_bytes: at a
    // source Commit, it goes then.
    bool full() const;
    // Whether the batch must go into the target before the source transaction's Commit, in
    // a chunk of the open target transaction: at batch_max_bytes (memory stays bounded), at
    // batch_max_rows once this transaction already goes in chunks, and otherwise at twice
    // batch_max_rows. A batch of small transactions that reaches batch_max_rows thus waits
    // for the Commit and goes whole, in one round trip that the stream does not wait for.
    bool must_flush_chunk() const;
    // Sends what the batch holds into the open target transaction (opening it).
    asio::awaitable<void> flush_chunk();
    // Whether this writer has anything to commit (a batch, or an open transaction).
    bool has_work() const {
        return !batch_.empty() || !staged_.empty() || tx_open_ || !affected_.empty();
    }
    // Whether the commit would send the batch whole, in one round trip that the session does
    // not wait for (no open transaction, no composite mirror changes).
    bool goes_whole() const { return !tx_open_ && !batch_.has_mirrors(); }
    // Builds the statements of a batch that will go whole (see send_commit) now, without a
    // query: the session calls it before it waits for the previous commit's outcome, so that
    // the target executes that commit while this one is built. Nothing may be added to the
    // batch until send_commit() or rollback().
    void stage_commit();
    bool busy() const {
        return tx_open_ || in_flight_.has_value() || !sent_commits_.empty() || finishing_;
    }
    // From now on each commit raises every lane's checkpoint row of the slot to its end_lsn
    // (apply::every_lane_checkpoint_statement) instead of writing this writer's own row: a sink
    // applying the keys of lanes that stopped apart, until it has passed them all.
    void checkpoint_every_lane(bool on) { every_lane_ = on; }
    // Sends the rest, then the checkpoint (with `end_lsn`) and COMMIT, in one round trip whose
    // results finish_commit() reads: nothing else may go on this connection in between, except
    // one more whole batch when can_chain() says so. What the batch holds is taken before the
    // first suspension, so that changes added meanwhile belong to the next batch.
    asio::awaitable<void> send_commit(std::optional<Lsn> end_lsn,
                                      std::optional<PgTimestamp> commit_time);
    // Whether the next batch may be sent now, behind the one commit still executing, instead of
    // after its outcome is read: the target then starts it as soon as it has committed the one
    // before, without waiting for the round trip back through authsync. That needs the batch
    // to go whole and the commit before to write this writer's own checkpoint row, which the
    // next batch's guard (apply::chain_guard_statement) reads.
    bool can_chain() const;
    // Reads what send_commit() sent, oldest first; a change the target rejected is found (and
    // stops the session or becomes a dead letter, as apply.on_error says) and the batch
    // committed again, and then any batch sent behind it (which its failure skipped).
    asio::awaitable<CommitPositions> finish_commit();
    // Rolls back the open transaction and drops the batch.
    asio::awaitable<void> rollback();
    asio::awaitable<Lsn> flush_lsn();

    // Rows applied per provider table and changes dead-lettered since the last call, for the
    // status once the commit is through.
    std::map<std::string, pipeline::RowCounts> take_counts() { return batch_.take_counts(); }
    std::uint64_t take_dead_letters() { return std::exchange(dead_letters_, 0); }
    // Round trips made to apply since the last call (status: target_round_trips).
    std::uint64_t take_round_trips() { return std::exchange(round_trips_, 0); }

private:
    // A commit sent and not read yet (send_commit); a whole batch keeps its queries for a
    // replay under savepoints.
    // A statement sent into the open transaction and executing, under a savepoint of its own;
    // it keeps its per-change values for a one-by-one retry.
    struct InFlight {
        apply::Statement statement;
        Lsn source;             // the final_lsn of the last source transaction sent with it
        std::string savepoint;  // taken just before it
    };
    struct SentCommit {
        std::optional<Lsn> end_lsn;
        std::optional<PgTimestamp> commit_time;
        std::vector<apply::Statement> statements;  // a whole batch's, without sql and params
        std::vector<pg::PipelineQuery> queries;    // what went, BEGIN first for a whole batch
        Lsn final_lsn;  // of its last source transaction (a change's own names its dead letter)
        std::size_t rows = 0;  // changes in the transaction
        // Sent behind another commit: its guard follows BEGIN.
        bool guarded = false;
        // Index in `queries` of a whole batch's first statement.
        std::size_t first_statement() const { return guarded ? 2 : 1; }
        // A batch sent behind one that the target rejected a change of: its results were read
        // (skipped), and it was applied again with that one (replay_with_followers).
        bool results_read = false;
        std::optional<CommitPositions> settled;
    };

    // `source`: the final_lsn of the last source transaction its changes came from (a dead
    // letter names its change's own, apply::Statement::sources, when the statement knows it).
    asio::awaitable<void> send_statement(apply::Statement st, Lsn source);
    asio::awaitable<void> settle();
    asio::awaitable<void> discard_in_flight();
    asio::awaitable<void> execute(const apply::Statement& st);
    void handle_result(const apply::Statement& st, const pg::Result& r);
    void note_affected(const apply::Statement& st, const pg::Result& r);
    std::vector<apply::Statement> recompute_statements();
    asio::awaitable<void> apply_one_by_one(const apply::Statement& st, Lsn source);
    asio::awaitable<void> set_aside(const apply::Statement& one, const pg::PgError& failed,
                                    Lsn source);
    asio::awaitable<void> record_dead_letter(pg::Params params);
    std::string target_of(const std::string& mapping) const;
    void open_transaction();
    asio::awaitable<std::vector<pg::PipelineOutcome>> run(std::vector<pg::PipelineQuery> queries);
    asio::awaitable<void> send(std::vector<pg::PipelineQuery> queries);
    asio::awaitable<std::vector<pg::PipelineOutcome>> results();
    asio::awaitable<pg::Result> run_one(std::string sql, pg::Params params = {});
    asio::awaitable<void> roll_back_to(const std::string& savepoint);
    asio::awaitable<void> rollback_transaction();
    // Throws std::logic_error while a commit's results are unread (nothing may go before).
    void require_commit_read(const char* what) const;
    std::vector<pg::PipelineQuery> commit_queries(std::optional<Lsn> end_lsn,
                                                  std::optional<PgTimestamp> commit_time) const;
    CommitPositions positions_of(const pg::Result& wal, bool checkpointed) const;
    asio::awaitable<CommitPositions> replay_one_by_one(SentCommit sent);
    asio::awaitable<CommitPositions> replay_with_followers(SentCommit sent);
    asio::awaitable<CommitPositions> read_commit();  // finish_commit's work
    bool chainable() const;                          // can_chain() without its size bound
    bool mirror_in_flight() const;

    const config::Config& config_;
    std::size_t target_index_;
    pipeline::WriterId lane_;
    pipeline::WriterId id_;
    std::string checkpoint_key_;
    pg::AsyncConnection target_;
    std::shared_ptr<spdlog::logger> log_;
    pipeline::LaneBatch batch_;
    // Composite targets' rows that mirror statements affected, by target table: recomputed
    // before the transaction commits.
    std::map<std::string, apply::AffectedKeys> affected_;
    // The last statement sent, executing while the stream goes on. settle() before any other
    // query.
    std::optional<InFlight> in_flight_;
    std::deque<SentCommit> sent_commits_;   // oldest first; at most two (can_chain)
    std::vector<apply::Statement> staged_;  // stage_commit()'s, for send_commit
    std::uint64_t savepoint_seq_ = 0;
    bool tx_open_ = false;
    bool every_lane_ = false;  // checkpoint_every_lane
    bool failed_ = false;      // a commit failed: nothing more goes (finish_commit)
    // finish_commit() is under way: a replay sends queries after its commit left the list.
    bool finishing_ = false;
    bool begin_pending_ = false;      // the transaction's BEGIN goes with the next pipeline
    bool begun_in_pipeline_ = false;  // ... and went with the one whose results are awaited
    std::uint64_t wal_block_size_ = 8192;
    Lsn txn_final_lsn_;
    std::uint64_t dead_letters_ = 0;
    std::uint64_t round_trips_ = 0;
    std::size_t tx_rows_ = 0;  // changes sent or staged in the open transaction
};

}  // namespace authsync::engine
