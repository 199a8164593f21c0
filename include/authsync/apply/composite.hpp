// Composite apply: the mirror changes of a batch, and the recomputation of what they affect.
//
// MirrorBatch collapses changes per mirrored row like Batch does for users (a later image
// merges over an earlier one, a delete wins, an insert after a delete revives) and yields one
// statement per mirror table and kind. Each statement changes the mirror and returns the
// target rows affected, one result row each: (target, key, changed-at in Unix microseconds).
// A partial image (unchanged TOAST) updates only the columns it has, and a partial image of a
// row the mirror does not hold returns ("", key, NULL) instead of writing NULLs.
//
// recompute_statement() then rebuilds the affected rows of one target from the mirrors, in the
// same transaction. Pure: builds SQL text and parameters, runs none.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "authsync/apply/batch.hpp"
#include "authsync/core/pg_time.hpp"
#include "authsync/mapping/composite.hpp"

namespace authsync::apply {

// What a mirror statement's result row says that is not a target: the mirror lacked the row.
inline constexpr std::string_view kMissingMirrorRow = "";

class MirrorBatch {
public:
    // As Batch's: `source` is the commit LSN of the change's source transaction.
    void upsert(const mapping::BoundMirror& mirror, mapping::MirrorRow row, PgTimestamp commit_time,
                Lsn source = {});
    void remove(const mapping::BoundMirror& mirror, std::vector<std::string> key,
                PgTimestamp commit_time, Lsn source = {});

    std::size_t rows() const { return rows_; }
    std::size_t bytes() const { return bytes_; }
    bool empty() const { return rows_ == 0; }

    std::vector<Statement> statements() const;
    void clear();

private:
    struct Pending {
        bool deleted = false;
        mapping::MirrorRow row;        // when !deleted
        std::vector<std::string> key;  // key column values
        PgTimestamp commit_time;
        Lsn source;
    };
    struct Table {
        mapping::MirrorSource source;
        std::vector<std::size_t> key_indexes;
        std::unordered_map<std::string, Pending> rows;  // by encoded key
    };
    Table& table_for(const mapping::BoundMirror& mirror);

    std::map<std::string, Table> tables_;  // by source table, for a stable statement order
    std::size_t rows_ = 0;
    std::size_t bytes_ = 0;
};

// The mirror statement for a TRUNCATE of the source: empties the mirror (with a `condition`
// over its rows `m`, of the rows it holds for), returns what it affected.
Statement mirror_truncate_statement(const mapping::MirrorSource& source, PgTimestamp commit_time,
                                    const std::string& condition = {});

// The keys of one target to recompute, with the Unix microseconds of the latest change that
// affected each (its updated_at).
using AffectedKeys = std::unordered_map<std::string, std::int64_t>;

// Recomputes `keys` of `target` from the mirrors: $1 text[] keys, $2 int8[] microseconds.
Statement recompute_statement(const mapping::ComposedTarget& target, const std::string& mapping,
                              const AffectedKeys& keys);
// Recomputes every key: those `all_keys` yields and those the target holds (so rows whose
// source is gone are removed). $1: the change time as Unix microseconds (text).
std::string recompute_all_sql(const mapping::ComposedTarget& target);
// CREATE TABLE IF NOT EXISTS for a mirror, with its indexes.
std::string mirror_ddl(const mapping::MirrorSource& source);

}  // namespace authsync::apply
