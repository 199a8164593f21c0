#include "authsync/apply/batch.hpp"

#include <charconv>
#include <cstdint>
#include <stdexcept>

#include "authsync/core/error.hpp"
#include "authsync/core/sql.hpp"

namespace authsync::apply {

namespace {

std::string timestamp_param(PgTimestamp t) {
    return t.to_iso8601();
}

// The batch's images and commit times, as the array parameters $1 and $2.
constexpr std::string_view kUnnestImages =
    "SELECT r::jsonb, u, NULL FROM unnest($1::text[], $2::timestamptz[]) AS x(r, u)";

}  // namespace

std::string users_sync_upsert(const std::string& table, std::string_view rows, RawJson raw_json) {
    std::string sql = "INSERT INTO " + table + " AS t (raw_json, updated_at, deleted_at) ";
    sql += rows;
    sql += raw_json == RawJson::Merge
               ? " ON CONFLICT (id) DO UPDATE SET raw_json = t.raw_json || EXCLUDED.raw_json, "
               : " ON CONFLICT (id) DO UPDATE SET raw_json = EXCLUDED.raw_json, ";
    sql += "updated_at = EXCLUDED.updated_at, deleted_at = NULL";
    return sql;
}

Batch::Table& Batch::table_for(const mapping::MappingRule& rule) {
    // Consecutive changes nearly always go to the same table: no name built, no lookup.
    if (auto* t = last_.table;
        t && t->target_table == rule.target_table && t->target_schema == rule.target_schema) {
        return *t;
    }
    auto name = rule.target_name();
    auto it = tables_.find(name);
    if (it == tables_.end()) {
        it = tables_.emplace(name, Table{rule.target_schema, rule.target_table, {}}).first;
    }
    last_.table = &it->second;
    return it->second;
}

void Batch::upsert(const mapping::MappingRule& rule, mapping::RowImage image,
                   PgTimestamp commit_time, Lsn source) {
    auto& table = table_for(rule);
    auto [it, inserted] = table.rows.try_emplace(image.key);
    Pending& p = it->second;
    p.mapping = rule.source_name();
    if (inserted) {
        ++rows_;
    } else {
        bytes_ -= std::min(bytes_, p.deleted ? p.image.key.size() + 64 : p.image.bytes());
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
    p.source = source;
    bytes_ += p.image.bytes();
}

void Batch::remove(const mapping::MappingRule& rule, std::string key, PgTimestamp commit_time,
                   Lsn source) {
    auto& table = table_for(rule);
    auto [it, inserted] = table.rows.try_emplace(key);
    Pending& p = it->second;
    p.mapping = rule.source_name();
    if (inserted) {
        ++rows_;
    } else {
        bytes_ -= std::min(bytes_, p.deleted ? p.image.key.size() + 64 : p.image.bytes());
    }
    p.deleted = true;
    p.image = mapping::RowImage{};
    p.image.key = std::move(key);
    p.commit_time = commit_time;
    p.source = source;
    p.on_delete = rule.on_delete;
    bytes_ += p.image.key.size() + 64;
}

void Batch::clear() {
    // The tables stay (empty, they yield no statement): the next batch reuses their buckets.
    for (auto& [name, table] : tables_) table.rows.clear();
    rows_ = 0;
    bytes_ = 0;
}

namespace {

void put_u32(std::string& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}

void put_i64(std::string& out, std::int64_t value) {
    const auto v = static_cast<std::uint64_t>(value);
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}

constexpr std::uint32_t element_oid(ArrayType type) {
    switch (type) {
        case ArrayType::Text: return 25;
        case ArrayType::Timestamptz: return 1184;
        case ArrayType::Int8: return 20;
    }
    return 0;
}

void put_element(std::string& out, ArrayType type, const std::string& value) {
    if (type == ArrayType::Text) {
        put_u32(out, static_cast<std::uint32_t>(value.size()));
        out += value;
        return;
    }
    std::int64_t v = 0;
    if (type == ArrayType::Timestamptz) {
        auto t = PgTimestamp::parse_iso8601(value);
        if (!t) throw std::invalid_argument("binary_array: not a timestamp written by authsync");
        v = t->micros;
    } else {
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (ec != std::errc() || end != value.data() + value.size()) {
            throw std::invalid_argument("binary_array: not an int8");
        }
    }
    put_u32(out, 8);
    put_i64(out, v);
}

}  // namespace

// array_recv's input: ndim 1, a has-nulls flag, the element type's OID, the dimension's
// length and lower bound 1, then each element as a length (-1: NULL) and its bytes.
std::string binary_array(ArrayType type, const std::vector<const std::string*>& elements) {
    std::size_t size = 20;
    bool nulls = false;
    for (const auto* e : elements) {
        size += 4 + (e ? e->size() : 0);
        nulls = nulls || e == nullptr;
    }
    std::string out;
    out.reserve(size);
    put_u32(out, elements.empty() ? 0 : 1);  // an empty array has no dimension
    put_u32(out, nulls ? 1 : 0);
    put_u32(out, element_oid(type));
    if (elements.empty()) return out;
    put_u32(out, static_cast<std::uint32_t>(elements.size()));
    put_u32(out, 1);
    for (const auto* e : elements) {
        if (e == nullptr) {
            put_u32(out, 0xffffffffu);
        } else {
            put_element(out, type, *e);
        }
    }
    return out;
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

std::string text_array_literal(const std::vector<std::string>& elements) {
    std::vector<const std::string*> ptrs;
    ptrs.reserve(elements.size());
    for (const auto& e : elements) ptrs.push_back(&e);
    return text_array_literal(ptrs);
}

namespace {

// The changes of one kind for one target table: column vectors plus what single() needs.
struct Columns {
    std::vector<ArrayType> types;                  // of each array parameter
    std::vector<std::vector<std::string>> arrays;  // one vector per array parameter
    std::vector<std::string> keys;
    std::vector<std::string> mappings;
    std::vector<Lsn> sources;

    explicit Columns(std::vector<ArrayType> t) : types(std::move(t)), arrays(types.size()) {}
    template <typename... Values>
    void add(const std::string& key, const std::string& mapping, Lsn source, Values&&... values) {
        std::size_t i = 0;
        (arrays[i++].emplace_back(std::forward<Values>(values)), ...);
        keys.push_back(key);
        mappings.push_back(mapping);
        sources.push_back(source);
    }
    bool empty() const { return keys.empty(); }

    // Consumes the columns: the values move on into the statement's per-change values.
    Statement statement(std::string sql, Statement::Kind kind) && {
        Statement st;
        st.sql = std::move(sql);
        st.kind = kind;
        st.rows = keys.size();
        st.arrays = types;
        std::vector<const std::string*> elements;
        for (std::size_t i = 0; i < arrays.size(); ++i) {
            elements.clear();
            for (const auto& e : arrays[i]) elements.push_back(&e);
            st.params.emplace_back(binary_array(types[i], elements));
        }
        st.row_values.resize(keys.size());
        for (std::size_t r = 0; r < keys.size(); ++r) {
            st.row_values[r].reserve(arrays.size());
            for (auto& a : arrays) st.row_values[r].emplace_back(std::move(a[r]));
        }
        st.keys = std::move(keys);
        st.mappings = std::move(mappings);
        st.sources = std::move(sources);
        return st;
    }
};

}  // namespace

Params Statement::array_params() const {
    if (arrays.empty()) return params;
    Params out;
    std::vector<const std::string*> elements;
    for (std::size_t k = 0; k < arrays.size(); ++k) {
        elements.clear();
        for (const auto& values : row_values) {
            const auto& v = values.at(k);
            elements.push_back(v ? &*v : nullptr);
        }
        out.emplace_back(binary_array(arrays[k], elements));
    }
    return out;
}

Statement Statement::single(std::size_t i) const {
    Statement st;
    st.sql = sql;
    st.kind = kind;
    st.rows = 1;
    st.arrays = arrays;
    const auto& values = row_values.at(i);
    for (std::size_t k = 0; k < values.size(); ++k) {
        std::vector<const std::string*> element{values[k] ? &*values[k] : nullptr};
        st.params.emplace_back(arrays.empty() ? text_array_literal(element)
                                              : binary_array(arrays.at(k), element));
    }
    st.keys = {keys.at(i)};
    st.row_values = {row_values.at(i)};
    st.mappings = {mappings.at(i)};
    if (!sources.empty()) st.sources = {sources.at(i)};
    return st;
}

std::vector<Statement> Batch::statements() const {
    std::vector<Statement> out;
    for (const auto& [name, table] : tables_) {
        const std::string target = quote_qualified(table.target_schema, table.target_table);
        using enum ArrayType;
        Columns full({Text, Timestamptz}), part({Text, Timestamptz}), soft({Text, Timestamptz}),
            hard({Text});
        for (const auto& [key, p] : table.rows) {
            if (p.deleted) {
                if (p.on_delete == mapping::OnDelete::Hard) {
                    hard.add(key, p.mapping, p.source, key);
                } else {
                    soft.add(key, p.mapping, p.source, key, timestamp_param(p.commit_time));
                }
            } else if (p.image.partial) {
                part.add(key, p.mapping, p.source, p.image.to_json(),
                         timestamp_param(p.commit_time));
            } else {
                full.add(key, p.mapping, p.source, p.image.to_json(),
                         timestamp_param(p.commit_time));
            }
        }
        if (!full.empty()) {
            out.push_back(std::move(full).statement(users_sync_upsert(target, kUnnestImages),
                                                    Statement::Kind::UpsertFull));
        }
        if (!part.empty()) {
            // Unchanged TOASTed values are absent from the image: merging keeps what the
            // target already holds for them. RETURNING tells which rows had nothing to merge.
            out.push_back(
                std::move(part).statement(users_sync_upsert(target, kUnnestImages, RawJson::Merge) +
                                              " RETURNING t.id, (xmax = 0) AS inserted",
                                          Statement::Kind::UpsertPartial));
        }
        if (!soft.empty()) {
            out.push_back(std::move(soft).statement(
                "UPDATE " + target +
                    " AS t SET deleted_at = x.d "
                    "FROM unnest($1::text[], $2::timestamptz[]) AS x(id, d) WHERE t.id = x.id",
                Statement::Kind::SoftDelete));
        }
        if (!hard.empty()) {
            out.push_back(std::move(hard).statement("DELETE FROM " + target +
                                                        " AS t USING unnest($1::text[]) "
                                                        "AS x(id) WHERE t.id = x.id",
                                                    Statement::Kind::HardDelete));
        }
    }
    return out;
}

namespace {

Statement plain(std::string sql, Params params, Statement::Kind kind) {
    Statement st;
    st.sql = std::move(sql);
    st.params = std::move(params);
    st.kind = kind;
    return st;
}

}  // namespace

Statement truncate_statement(const mapping::MappingRule& rule, PgTimestamp commit_time,
                             const std::string& condition) {
    const std::string target = quote_qualified(rule.target_schema, rule.target_table);
    if (rule.on_delete == mapping::OnDelete::Hard) {
        std::string sql = "DELETE FROM " + target;
        if (!condition.empty()) sql += " WHERE " + condition;
        return plain(sql, {}, Statement::Kind::HardDelete);
    }
    std::string sql =
        "UPDATE " + target + " SET deleted_at = $1::timestamptz WHERE deleted_at IS NULL";
    if (!condition.empty()) sql += " AND " + condition;
    return plain(sql, {commit_time.to_iso8601()}, Statement::Kind::SoftDelete);
}

namespace {

// The checkpoint row's upsert; `end_lsn` is what an existing row's end_lsn becomes. Every write
// marks the row as covering what authsync acknowledges (engine::Checkpoint); without a commit
// time (an idle acknowledgement) the stored one stays.
Statement checkpoint_upsert(std::string prefix, const char* end_lsn, const std::string& slot,
                            Lsn lsn, std::optional<PgTimestamp> commit_time) {
    std::optional<std::string> time;
    if (commit_time) time = commit_time->to_iso8601();
    return plain(std::move(prefix) +
                     "INSERT INTO authsync.checkpoint (slot, end_lsn, commit_time, updated_at, "
                     "covers_acknowledged) VALUES ($1, $2::pg_lsn, $3::timestamptz, now(), true) "
                     "ON CONFLICT (slot) DO UPDATE SET end_lsn = " +
                     end_lsn +
                     ", commit_time = coalesce(EXCLUDED.commit_time, "
                     "authsync.checkpoint.commit_time), updated_at = now(), "
                     "covers_acknowledged = true",
                 {slot, lsn.to_string(), time}, Statement::Kind::UpsertFull);
}

}  // namespace

Statement checkpoint_statement(const std::string& slot, Lsn end_lsn,
                               std::optional<PgTimestamp> commit_time) {
    return checkpoint_upsert({}, "EXCLUDED.end_lsn", slot, end_lsn, commit_time);
}

Statement every_lane_checkpoint_statement(const std::string& slot, Lsn end_lsn,
                                          std::optional<PgTimestamp> commit_time) {
    return checkpoint_upsert(
        "WITH lanes AS (UPDATE authsync.checkpoint SET end_lsn = greatest(end_lsn, $2::pg_lsn), "
        "updated_at = now(), covers_acknowledged = true WHERE starts_with(slot, $1 || '/lane')) ",
        "greatest(authsync.checkpoint.end_lsn, EXCLUDED.end_lsn)", slot, end_lsn, commit_time);
}

Statement chain_guard_statement(const std::string& key, Lsn behind) {
    // count(*) is 0 unless the row holds `behind`: 1 / 0 fails.
    return plain(
        "SELECT 1 / count(*) FROM authsync.checkpoint WHERE slot = $1 AND end_lsn = $2::pg_lsn",
        {key, behind.to_string()}, Statement::Kind::UpsertFull);
}

std::string checkpoint_key(const std::string& slot, std::size_t lane) {
    return lane == 0 ? slot : slot + "/lane" + std::to_string(lane);
}

}  // namespace authsync::apply
