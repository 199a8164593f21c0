// LaneBatch: the operations one writer holds for its next target transaction, collapsed.
//
// Mapping changes collapse in an apply::Batch, mirror changes in an apply::MirrorBatch (see
// there); statements() yields the mapping statements first, then the mirror statements (whose
// results name the composite rows to recompute). Counts rows per provider table for the status.
// TRUNCATE is not held here: the writer applies it in order. Pure.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "authsync/apply/batch.hpp"
#include "authsync/apply/composite.hpp"
#include "authsync/pipeline/change_router.hpp"

namespace authsync::pipeline {

struct RowCounts {
    std::uint64_t upserts = 0;
    std::uint64_t deletes = 0;
};

class LaneBatch {
public:
    // An Upsert or Remove of the source transaction committed at `commit_time`, whose commit
    // record is at `source`; its row image or key moves into the batch.
    void add(Operation&& op, PgTimestamp commit_time, Lsn source);

    std::size_t rows() const { return mappings_.rows() + mirrors_.rows(); }
    std::size_t bytes() const { return mappings_.bytes() + mirrors_.bytes(); }
    bool empty() const { return mappings_.empty() && mirrors_.empty(); }
    // Whether it holds composite mirror changes (their results name rows to recompute).
    bool has_mirrors() const { return !mirrors_.empty(); }

    // The statements for what is held, and clears it (the counts stay until take_counts).
    std::vector<apply::Statement> take_statements();
    // Rows per provider table since the last call.
    std::map<std::string, RowCounts> take_counts();
    void count(const std::string& source, RowCounts rows);
    void clear();

private:
    apply::Batch mappings_;
    apply::MirrorBatch mirrors_;
    std::map<std::string, RowCounts> counts_;
};

}  // namespace authsync::pipeline
