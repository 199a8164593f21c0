// FrameBuilder: the source role's frames (frame.hpp), built from the pgoutput messages as they
// arrive and the routing decisions made for each change.
//
// Per target it keeps the transaction being received (Begin, then before a change the Relation
// message of each table it touches, with the Type messages of its columns, once per
// transaction and again after a re-sent Relation; then the change) and the batch of whole
// transactions not yet published. A transaction that routed nothing to a target leaves no
// trace there; one that ends at or below what the target's subject already holds (published
// before a restart) is dropped. take() turns each batch into one frame, in parts of at most
// max_frame_bytes encoded, chained to the previous frame on the subject. Pure: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "authsync/core/lsn.hpp"
#include "authsync/transport/frame.hpp"

namespace authsync::transport {

class FrameBuilder {
public:
    // `targets` subjects; frames of at most `max_frame_bytes` encoded; `epoch` names the
    // publishing session.
    FrameBuilder(std::size_t targets, std::size_t max_frame_bytes, std::uint64_t epoch);

    // Where target `t`'s subject stands: `chain`, the next frame's prev_end_lsn; `published`,
    // the end_lsn at or below which its transactions are stored already.
    void start_target(std::size_t t, Lsn chain, Lsn published);
    // The same from the last message stored on the subject (after a restart): its end, or for
    // a frame whose last part is missing its start (published again whole); for a mark, the
    // chain it names (a mark is not a link of the chain).
    void resume_target(std::size_t t, const Frame& last);

    // Schema messages, whenever they arrive (the latest of a relation replaces the one before).
    void relation(std::uint32_t relation_id, std::string_view bytes,
                  std::vector<std::uint32_t> column_types);
    void type(std::uint32_t type_id, std::string_view bytes);

    void begin(std::string_view bytes);
    // A change the router sent to target `t`, naming `relations` (one; a TRUNCATE's several).
    // Throws ProtocolError for a relation whose Relation message has not come.
    void change(std::size_t t, const std::vector<std::uint32_t>& relations, std::string_view bytes);
    // The Commit closing the transaction: into each target's batch that it reached.
    void commit(std::string_view bytes, Lsn end_lsn);

    // Whole transactions wait to be published (for some target, or only to be acknowledged).
    std::size_t pending_transactions() const { return pending_txns_; }
    Lsn pending_end() const { return pending_end_; }
    // The largest batch's size, encoded (for batch_max_bytes).
    std::size_t largest_batch_bytes() const;

    // Each target's batch as frames (in parts), in target order, targets without one left
    // out; the batches are emptied and the chains moved on to each frame's end (call it once
    // the caller will publish them, and start over from the stream after a failure).
    std::vector<std::pair<std::size_t, std::vector<Frame>>> take();

    Lsn chain(std::size_t t) const { return targets_.at(t).chain; }

    // A mark for target `t` (frame.hpp): no messages, the chain as its predecessor, and
    // `covered` (received and stored up to there, nothing pending) as its end. It keeps an idle
    // subject from emptying under the stream's retention, so that a sink behind it sees the gap
    // (its first delivery names a predecessor past its checkpoint). None when `covered` is not
    // past the chain, or a transaction for `t` waits. The chain does not move: the next frame
    // still names the last one with changes.
    std::optional<Frame> mark(std::size_t t, Lsn covered) const;

private:
    struct Target {
        Lsn chain;
        Lsn published;
        std::vector<std::string> txn;           // the transaction being received
        std::set<std::uint32_t> txn_relations;  // Relation messages already in `txn`
        std::vector<std::string> batch;         // whole transactions
        std::size_t batch_bytes = 0;
        Lsn batch_end;
    };
    struct Relation {
        std::string bytes;
        std::vector<std::uint32_t> column_types;
    };

    std::vector<Target> targets_;
    std::size_t max_frame_bytes_;
    std::uint64_t epoch_;
    std::map<std::uint32_t, Relation> relations_;
    std::map<std::uint32_t, std::string> types_;
    std::string begin_;
    std::size_t pending_txns_ = 0;
    Lsn pending_end_;
};

}  // namespace authsync::transport
