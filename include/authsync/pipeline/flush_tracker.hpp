// FlushTracker: what may be reported to the provider as flushed, and what a writer skips.
//
// The model is PostgreSQL's apply worker (worker.c: lsn_mapping, get_flush_position()). Each
// writer (an apply lane into a target) commits source transactions into its target, with its
// own checkpoint row in the same transaction. A commit is visible before it is durable
// (synchronous_commit off, or a target that runs so): the writer's queue maps the target's WAL
// position after the COMMIT to the source end_lsn it covers, and an entry becomes durable once
// the target's WAL flush position reaches it. A writer that had nothing to write for a batch
// still passes its end_lsn through the queue, so that it is covered as soon as everything it
// did write before is durable.
//
// What is reported as flushed is the minimum over writers of what each holds durable, never
// less than what was reported before (the slot's confirmed_flush_lsn must not move back).
// Writers are grouped by target database (fan-out): a target counts only as far as one of its
// checkpoint rows holds durably, so that the slot is never ahead of any target's stored
// checkpoint (a target restored from a backup is then found at start). A target that has
// nothing to write for a while must have a checkpoint written now and then to let the slot
// advance (stored_behind()).
// When nothing is pending anywhere, a keepalive's WAL end is first recorded as every writer's
// checkpoint (idle_record) and acknowledged once that is durable: the slot is then never ahead
// of the checkpoints. Pure: no I/O, no clock of its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <vector>

#include "authsync/core/lsn.hpp"

namespace authsync::pipeline {

using WriterId = std::size_t;

class FlushTracker {
public:
    using Clock = std::chrono::steady_clock;

    // `writers` writers into one target.
    explicit FlushTracker(std::size_t writers);
    // One writer per entry, each into the target given (0, 1, ...: every one used).
    explicit FlushTracker(std::vector<std::size_t> target_of);

    std::size_t writers() const { return writers_.size(); }

    // Start-up. `checkpoint`: the end_lsn the writer's target holds (zero: none).
    // `target_insert_point`: the durable_point() of the target's insert position now: the
    // checkpoint may have been committed asynchronously by a process that died before the
    // target flushed it, so it counts as durable only once the flush passes this point.
    void start_writer(WriterId w, Lsn checkpoint, Lsn target_insert_point);
    // Start-up, after every writer: the slot's confirmed_flush_lsn, if it has one. Nothing
    // below it needs holding back, and nothing below it is ever reported.
    void start(std::optional<Lsn> slot_confirmed_flush);

    // Where streaming resumes: the lowest checkpoint (each writer skips what its own covers).
    Lsn resume_lsn() const;
    // Whether writer `w` already holds the source transaction whose commit is at `final_lsn`.
    bool skips(WriterId w, Lsn final_lsn) const { return final_lsn < writers_.at(w).checkpoint; }
    Lsn checkpoint(WriterId w) const { return writers_.at(w).checkpoint; }

    // A Commit arrived (end_lsn): what is reported as written.
    void received(Lsn end_lsn);
    // Writer `w` committed source transactions up to `end_lsn` with its target at WAL position
    // `target_point` (its durable_point), or, with nullopt, had nothing to write for them.
    void committed(WriterId w, Lsn end_lsn, std::optional<Lsn> target_point);
    // The target of writer `w` has flushed its WAL up to `flush`.
    void target_flushed(WriterId w, Lsn flush);

    // The keepalive's WAL end to record as every writer's checkpoint, when it is due: nothing is
    // pending (`applied_all`: no transaction or batch open), every commit is durable, it is
    // ahead of what was committed (or at it, when some target's rows are behind:
    // stored_behind), and the last record is at least `every` old.
    std::optional<Lsn> idle_record(Lsn wal_end, bool applied_all, Clock::time_point now,
                                   Clock::duration every);

    // Where every writer's row is brought at a clean stop, so that a restart finds them
    // together (pipeline::lane_start_positions): the highest checkpoint, when the rows stand
    // apart and the stream has been received up to it in this session. Not before: a row
    // behind may lack a change whose commit a crash lost while another writer's commit of the
    // same batch held (lanes killed apart); raising it before the stream sent that
    // transaction again would skip the change for good.
    std::optional<Lsn> together_at() const;

    // What to report: write, and flush (= apply).
    Lsn written() const { return std::max(received_, acknowledged_); }
    Lsn acknowledged() const { return acknowledged_; }
    // The highest end_lsn committed by any writer (the status's applied LSN).
    Lsn committed_lsn() const { return committed_; }
    // Whether some writer's commits wait for its target's WAL flush.
    bool has_unflushed() const;
    bool has_unflushed(WriterId w) const { return !writers_.at(w).unflushed.empty(); }
    // Whether target `t`'s durable checkpoint rows hold less than its writers have covered:
    // it holds the acknowledgement back until one of its writers writes a checkpoint.
    bool stored_behind(std::size_t t) const;
    std::size_t targets() const { return targets_; }
    // What target `t` holds durably in its checkpoint rows (the least its writers cover).
    Lsn target_durable(std::size_t t) const { return target_holds(t); }

private:
    struct Unflushed {
        std::optional<Lsn> target_point;  // nullopt: nothing written; durable with those before
        Lsn source_end_lsn;
    };
    struct Writer {
        std::size_t target = 0;
        Lsn checkpoint;
        Lsn durable;  // every source end_lsn up to this one is durable in the target
        Lsn stored;   // the highest end_lsn durable in its checkpoint row
        std::deque<Unflushed> unflushed;
    };
    // What target `t` holds: the least durable of its writers, capped by its stored rows.
    Lsn target_holds(std::size_t t) const;
    void advance(Writer& writer, std::optional<Lsn> flush);
    void update_acknowledged();

    std::vector<Writer> writers_;
    std::size_t targets_ = 1;
    Lsn received_;
    Lsn streamed_;  // the highest end_lsn (or idle record) the stream delivered in this session
    Lsn committed_;
    Lsn acknowledged_;
    std::optional<Clock::time_point> last_idle_record_;
    struct Hold {
        bool seen = false;
        Lsn lowest;  // the least durable of the target's writers
        Lsn stored;  // the most its checkpoint rows hold
    };
    std::vector<Hold> holds_;  // update_acknowledged()'s per-target scratch
};

}  // namespace authsync::pipeline
