#include "authsync/pipeline/lane_batch.hpp"

#include <stdexcept>

namespace authsync::pipeline {

void LaneBatch::add(Operation&& op, PgTimestamp commit_time, Lsn source) {
    const auto& d = *op.destination;
    auto& counts = counts_[d.source_name];
    if (auto* u = std::get_if<Upsert>(&op.change)) {
        if (d.mapping) {
            mappings_.upsert(d.mapping->rule(), std::move(u->image), commit_time, source);
        } else {
            mirrors_.upsert(*d.mirror, std::move(u->row), commit_time, source);
        }
        ++counts.upserts;
    } else if (auto* r = std::get_if<Remove>(&op.change)) {
        if (d.mapping) {
            mappings_.remove(d.mapping->rule(), std::move(r->key), commit_time, source);
        } else {
            mirrors_.remove(*d.mirror, std::move(r->mirror_key), commit_time, source);
        }
        ++counts.deletes;
    } else {
        throw std::logic_error("a TRUNCATE is applied in order, not batched");
    }
}

std::vector<apply::Statement> LaneBatch::take_statements() {
    auto statements = mappings_.statements();
    for (auto& st : mirrors_.statements()) statements.push_back(std::move(st));
    mappings_.clear();
    mirrors_.clear();
    return statements;
}

std::map<std::string, RowCounts> LaneBatch::take_counts() {
    auto counts = std::move(counts_);
    counts_.clear();
    return counts;
}

void LaneBatch::count(const std::string& source, RowCounts rows) {
    auto& c = counts_[source];
    c.upserts += rows.upserts;
    c.deletes += rows.deletes;
}

void LaneBatch::clear() {
    mappings_.clear();
    mirrors_.clear();
    counts_.clear();
}

}  // namespace authsync::pipeline
