// Batch: the changes bound for the target, collapsed per key, turned into set-based SQL.
//
// Several source transactions may share one batch. Within it, changes to the same users_sync
// row collapse to the final state (a later upsert wins, merging over an earlier image; a
// delete wins over what came before; an upsert after a delete revives the row). statements()
// then yields one array-parameter statement per kind of change and target table, so a batch
// of any size costs a handful of round trips. Pure: builds SQL text and parameters, runs none.
//
// TRUNCATE is not collapsed: the applier flushes the batch's statements before it.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "authsync/core/lsn.hpp"
#include "authsync/core/pg_time.hpp"
#include "authsync/mapping/mapper.hpp"
#include "authsync/mapping/rule.hpp"

namespace authsync::apply {

using Params = std::vector<std::optional<std::string>>;

// The element type of an array parameter. Array parameters go in PostgreSQL's binary array
// format (array_recv): the target reads each element's length instead of scanning and
// unescaping a text literal, which measured a third less target CPU on realistic rows
// (bench/statements).
enum class ArrayType { Text, Timestamptz, Int8 };

struct Statement {
    std::string sql;
    Params params;
    std::size_t rows = 0;  // changes it carries
    // Mirror: a composite mapping's mirror change, whose result rows name affected targets;
    // Recompute: a composite target rebuilt from its mirrors.
    enum class Kind {
        UpsertFull,
        UpsertPartial,
        SoftDelete,
        HardDelete,
        MirrorUpsert,
        MirrorDelete,
        Recompute
    };
    Kind kind = Kind::UpsertFull;
    // Per parameter when the parameters are arrays, sent in binary (binary_array); empty: the
    // parameters are text.
    std::vector<ArrayType> arrays;
    // Per change, for a statement that the target rejects: its key, its element of each array
    // parameter (so it can be sent alone), and the mapping it came from.
    std::vector<std::string> keys;
    std::vector<std::vector<std::optional<std::string>>> row_values;  // nullopt: NULL
    std::vector<std::string> mappings;                                // source table of each change
    // Per change, the commit LSN of the last source transaction that changed it (what a dead
    // letter names); empty when the statement does not know them.
    std::vector<Lsn> sources;

    // A mirror's change: its result rows name the composite targets to recompute.
    bool is_mirror() const { return kind == Kind::MirrorUpsert || kind == Kind::MirrorDelete; }
    // The same statement for change `i` alone.
    Statement single(std::size_t i) const;
    // The array parameters again, from the per-change values (a statement whose parameters
    // were dropped once sent keeps only those); a statement without arrays keeps its own.
    Params array_params() const;
};

class Batch {
public:
    // A change of the source transaction committed at `commit_time`, whose commit record is
    // at `source` (its Begin's final_lsn).
    void upsert(const mapping::MappingRule& rule, mapping::RowImage image, PgTimestamp commit_time,
                Lsn source = {});
    void remove(const mapping::MappingRule& rule, std::string key, PgTimestamp commit_time,
                Lsn source = {});

    // Changes held (after collapsing) and their approximate size in bytes.
    std::size_t rows() const { return rows_; }
    std::size_t bytes() const { return bytes_; }
    bool empty() const { return rows_ == 0; }

    std::vector<Statement> statements() const;
    void clear();

private:
    struct Pending {
        std::string mapping;  // source table
        bool deleted = false;
        mapping::RowImage image;  // when !deleted
        PgTimestamp commit_time;
        Lsn source;
        mapping::OnDelete on_delete = mapping::OnDelete::Soft;
    };
    struct Table {
        std::string target_schema;
        std::string target_table;
        std::unordered_map<std::string, Pending> rows;
    };
    Table& table_for(const mapping::MappingRule& rule);

    std::map<std::string, Table> tables_;  // by target name, for a stable statement order
    // The last table table_for() answered (map nodes are stable). A copy or move of the batch
    // starts without it: it would point into the other batch's map.
    struct LastTable {
        Table* table = nullptr;
        LastTable() = default;
        LastTable(const LastTable&) {}
        LastTable& operator=(const LastTable&) {
            table = nullptr;
            return *this;
        }
    };
    LastTable last_;
    std::size_t rows_ = 0;
    std::size_t bytes_ = 0;
};

// One-dimensional array of `elements` (null: NULL) in PostgreSQL's binary format: the element
// values are the text forms authsync writes (to_iso8601 for timestamps, decimal for int8).
// Throws std::invalid_argument for a value that is not of the type.
std::string binary_array(ArrayType type, const std::vector<const std::string*>& elements);

// A PostgreSQL array literal of text elements: {"a","b\"c",NULL}.
std::string text_array_literal(const std::vector<const std::string*>& elements);
std::string text_array_literal(const std::vector<std::string>& elements);

// What an upsert does with the raw_json of a user the users_sync table already holds.
enum class RawJson {
    Replace,  // the new image is the whole row
    Merge,    // a partial image (unchanged TOASTed values absent) merged over the stored one
};

// The one upsert into a users_sync table (`table` quoted): `rows` is a query or VALUES list
// yielding (raw_json, updated_at, deleted_at). A user already there takes the new raw_json and
// updated_at and is deleted no longer. Callers may append a WHERE for the conflict action and
// a RETURNING.
std::string users_sync_upsert(const std::string& table, std::string_view rows,
                              RawJson raw_json = RawJson::Replace);

// Statements that soft-delete (or remove) every row of a target table, for TRUNCATE; with a
// `condition` (SQL over the target's columns), the rows it holds for.
Statement truncate_statement(const mapping::MappingRule& rule, PgTimestamp commit_time,
                             const std::string& condition = {});
// The checkpoint upsert, run in the same transaction as the batch; without a commit time (an
// idle acknowledgement) the stored one stays.
Statement checkpoint_statement(const std::string& slot, Lsn end_lsn,
                               std::optional<PgTimestamp> commit_time);
// The checkpoint of one writer that applies every lane's keys of `slot` (a sink that took over
// lanes which stopped at different positions): each lane's row is raised to at least `end_lsn`,
// none lowered, so that every lane still skips what it held before.
Statement every_lane_checkpoint_statement(const std::string& slot, Lsn end_lsn,
                                          std::optional<PgTimestamp> commit_time);
// The first statement of a batch sent while the one before it (whose checkpoint is `behind`)
// still executes: it fails, and with it this batch's transaction, unless the checkpoint row
// `key` holds `behind`, i.e. unless that batch committed. A batch thus never commits past one
// that did not, whatever made that one fail (its COMMIT too: that leaves no aborted
// transaction for the next one to run into).
Statement chain_guard_statement(const std::string& key, Lsn behind);
// The checkpoint row of apply lane `lane` of `slot`: lane 0's is the slot's own row (as
// before lanes existed), lane k's is "<slot>/lane<k>" ('/' is never in a slot name).
std::string checkpoint_key(const std::string& slot, std::size_t lane);
// SQL condition over authsync.checkpoint: the rows of every lane of the slot named by $1.
inline constexpr const char* kSlotCheckpointRows =
    "(slot = $1 OR starts_with(slot, $1 || '/lane'))";

}  // namespace authsync::apply
