#include "authsync/apply/batch.hpp"

#include "authsync/core/sql.hpp"

namespace authsync::apply {

namespace {

// What a pending change weighs in memory, roughly: enough to bound a batch by bytes.
std::size_t image_bytes(const mapping::RowImage& image) {
    std::size_t n = image.key.size() + 64;
    for (const auto& [k, v] : image.fields) n += k.size() + v.size() + 32;
    return n;
}

std::string timestamp_param(PgTimestamp t) { return t.to_iso8601(); }

}  // namespace

Batch::Table& Batch::table_for(const mapping::MappingRule& rule) {
    auto name = rule.target_name();
    auto it = tables_.find(name);
    if (it == tables_.end()) {
        it = tables_.emplace(name, Table{rule.target_schema, rule.target_table, {}}).first;
    }
    return it->second;
}

void Batch::upsert(const mapping::MappingRule& rule, mapping::RowImage image,
                   PgTimestamp commit_time) {
    auto& table = table_for(rule);
    auto [it, inserted] = table.rows.try_emplace(image.key);
    Pending& p = it->second;
    if (inserted) {
        ++rows_;
    } else {
        bytes_ -= std::min(bytes_, p.deleted ? p.image.key.size() + 64 : image_bytes(p.image));
    }
    if (!inserted && !p.deleted) {
        p.image.merge_from(image);
    } else {
        // New, or revived after a delete in this batch: a partial image still merges over
        // what the target holds (the soft-deleted row keeps its raw_json).
        p.image = std::move(image);
    }
    p.deleted = false;
    p.commit_time = commit_time;
    bytes_ += image_bytes(p.image);
}

void Batch::remove(const mapping::MappingRule& rule, std::string key, PgTimestamp commit_time) {
    auto& table = table_for(rule);
    auto [it, inserted] = table.rows.try_emplace(key);
    Pending& p = it->second;
    if (inserted) {
        ++rows_;
    } else {
        bytes_ -= std::min(bytes_, p.deleted ? p.image.key.size() + 64 : image_bytes(p.image));
    }
    p.deleted = true;
    p.image = mapping::RowImage{};
    p.image.key = std::move(key);
    p.commit_time = commit_time;
    p.on_delete = rule.on_delete;
    bytes_ += p.image.key.size() + 64;
}

void Batch::clear() {
    tables_.clear();
    rows_ = 0;
    bytes_ = 0;
}

std::string text_array_literal(const std::vector<const std::string*>& elements) {
    std::size_t size = 2;
    for (const auto* e : elements) size += (e ? e->size() + 3 : 5);
    std::string out;
    out.reserve(size + size / 16);
    out += '{';
    bool first = true;
    for (const auto* e : elements) {
        if (!first) out += ',';
        first = false;
        if (e == nullptr) {
            out += "NULL";
            continue;
        }
        out += '"';
        for (char c : *e) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    }
    out += '}';
    return out;
}

std::vector<Statement> Batch::statements() const {
    std::vector<Statement> out;
    for (const auto& [name, table] : tables_) {
        const std::string target = quote_qualified(table.target_schema, table.target_table);
        // Column vectors per kind of change.
        std::vector<std::string> full_json, full_time, part_json, part_time, soft_ids,
            soft_time, hard_ids;
        for (const auto& [key, p] : table.rows) {
            if (p.deleted) {
                if (p.on_delete == mapping::OnDelete::Hard) {
                    hard_ids.push_back(key);
                } else {
                    soft_ids.push_back(key);
                    soft_time.push_back(timestamp_param(p.commit_time));
                }
            } else if (p.image.partial) {
                part_json.push_back(p.image.to_json());
                part_time.push_back(timestamp_param(p.commit_time));
            } else {
                full_json.push_back(p.image.to_json());
                full_time.push_back(timestamp_param(p.commit_time));
            }
        }
        auto array = [](const std::vector<std::string>& v) {
            std::vector<const std::string*> ptrs;
            ptrs.reserve(v.size());
            for (const auto& s : v) ptrs.push_back(&s);
            return text_array_literal(ptrs);
        };
        if (!full_json.empty()) {
            out.push_back(Statement{
                "INSERT INTO " + target + " AS t (raw_json, updated_at, deleted_at) "
                "SELECT r::jsonb, u, NULL FROM unnest($1::text[], $2::timestamptz[]) AS x(r, u) "
                "ON CONFLICT (id) DO UPDATE SET raw_json = EXCLUDED.raw_json, "
                "updated_at = EXCLUDED.updated_at, deleted_at = NULL",
                {array(full_json), array(full_time)}, full_json.size(),
                Statement::Kind::UpsertFull});
        }
        if (!part_json.empty()) {
            // Unchanged TOASTed values are absent from the image: merging keeps what the
            // target already holds for them. RETURNING tells which rows had nothing to merge.
            out.push_back(Statement{
                "INSERT INTO " + target + " AS t (raw_json, updated_at, deleted_at) "
                "SELECT r::jsonb, u, NULL FROM unnest($1::text[], $2::timestamptz[]) AS x(r, u) "
                "ON CONFLICT (id) DO UPDATE SET raw_json = t.raw_json || EXCLUDED.raw_json, "
                "updated_at = EXCLUDED.updated_at, deleted_at = NULL "
                "RETURNING t.id, (xmax = 0) AS inserted",
                {array(part_json), array(part_time)}, part_json.size(),
                Statement::Kind::UpsertPartial});
        }
        if (!soft_ids.empty()) {
            out.push_back(Statement{
                "UPDATE " + target + " AS t SET deleted_at = x.d "
                "FROM unnest($1::text[], $2::timestamptz[]) AS x(id, d) WHERE t.id = x.id",
                {array(soft_ids), array(soft_time)}, soft_ids.size(),
                Statement::Kind::SoftDelete});
        }
        if (!hard_ids.empty()) {
            out.push_back(Statement{"DELETE FROM " + target + " AS t USING unnest($1::text[]) "
                                    "AS x(id) WHERE t.id = x.id",
                                    {array(hard_ids)}, hard_ids.size(),
                                    Statement::Kind::HardDelete});
        }
    }
    return out;
}

Statement truncate_statement(const mapping::MappingRule& rule, PgTimestamp commit_time) {
    const std::string target = quote_qualified(rule.target_schema, rule.target_table);
    if (rule.on_delete == mapping::OnDelete::Hard) {
        return Statement{"DELETE FROM " + target, {}, 0, Statement::Kind::HardDelete};
    }
    return Statement{"UPDATE " + target + " SET deleted_at = $1::timestamptz WHERE deleted_at IS NULL",
                     {commit_time.to_iso8601()}, 0, Statement::Kind::SoftDelete};
}

Statement checkpoint_statement(const std::string& slot, const std::string& end_lsn,
                               PgTimestamp commit_time) {
    return Statement{
        "INSERT INTO authsync.checkpoint (slot, end_lsn, commit_time, updated_at) "
        "VALUES ($1, $2::pg_lsn, $3::timestamptz, now()) ON CONFLICT (slot) DO UPDATE SET "
        "end_lsn = EXCLUDED.end_lsn, commit_time = EXCLUDED.commit_time, updated_at = now()",
        {slot, end_lsn, commit_time.to_iso8601()}, 0, Statement::Kind::UpsertFull};
}

}  // namespace authsync::apply
