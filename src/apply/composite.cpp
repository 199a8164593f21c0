#include "authsync/apply/composite.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "authsync/core/error.hpp"
#include "authsync/core/sql.hpp"

namespace authsync::apply {

namespace {

using mapping::MirrorSource;

// One string for a key: each value length-prefixed, so no separator can collide.
std::string encode_key(const std::vector<std::string>& key) {
    std::string out;
    for (const auto& k : key) {
        out += std::to_string(k.size());
        out += ':';
        out += k;
    }
    return out;
}

std::string display_key(const std::vector<std::string>& key) {
    std::string out;
    for (const auto& k : key) {
        if (!out.empty()) out += ':';
        out += k;
    }
    return out;
}

std::size_t row_bytes(const mapping::MirrorRow& row) {
    std::size_t n = 64;
    for (const auto& v : row.values) n += (v ? v->size() : 0) + 16;
    return n;
}

// Array parameters built row by row.
struct Arrays {
    std::vector<ArrayType> types;  // of each array parameter
    std::vector<std::vector<std::optional<std::string>>> columns;
    std::vector<std::string> keys;
    std::vector<Lsn> sources;

    explicit Arrays(std::vector<ArrayType> t) : types(std::move(t)), columns(types.size()) {}
    // `n` text arrays, then the change times (unnest_cte's parameters).
    static Arrays text_then_time(std::size_t n) {
        std::vector<ArrayType> t(n, ArrayType::Text);
        t.push_back(ArrayType::Timestamptz);
        return Arrays(std::move(t));
    }
    void add(const std::string& key, std::vector<std::optional<std::string>> values) {
        for (std::size_t i = 0; i < values.size(); ++i) columns[i].push_back(std::move(values[i]));
        keys.push_back(key);
    }
    // A change of a source transaction (not a recompute): its commit LSN too.
    void add(const std::string& key, Lsn source, std::vector<std::optional<std::string>> values) {
        add(key, std::move(values));
        sources.push_back(source);
    }
    bool empty() const { return keys.empty(); }

    Statement statement(std::string sql, Statement::Kind kind, const std::string& mapping) const {
        Statement st;
        st.sql = std::move(sql);
        st.kind = kind;
        st.rows = keys.size();
        st.arrays = types;
        for (std::size_t i = 0; i < columns.size(); ++i) {
            std::vector<const std::string*> ptrs;
            ptrs.reserve(columns[i].size());
            for (const auto& v : columns[i]) ptrs.push_back(v ? &*v : nullptr);
            st.params.emplace_back(binary_array(types.at(i), ptrs));
        }
        st.keys = keys;
        st.row_values.resize(keys.size());
        for (std::size_t r = 0; r < keys.size(); ++r) {
            for (const auto& c : columns) st.row_values[r].push_back(c[r]);
        }
        st.mappings.assign(keys.size(), mapping);
        if (sources.size() == keys.size()) st.sources = sources;
        return st;
    }
};

std::string column_list(const MirrorSource& s, std::string_view prefix) {
    std::string out;
    for (const auto& c : s.columns) {
        if (!out.empty()) out += ", ";
        out += prefix;
        out += quote_identifier(c.name);
    }
    return out;
}

// m."k1" = x."k1"::T AND ...
std::string key_match(const MirrorSource& s, std::string_view m, std::string_view x) {
    std::string out;
    for (const auto& k : s.key_columns) {
        if (!out.empty()) out += " AND ";
        out += fmt::format("{}.{} = {}.{}::{}", m, quote_identifier(k), x, quote_identifier(k),
                           s.column(k)->type);
    }
    return out;
}

// x AS (SELECT * FROM unnest($1::text[], ..., $n::timestamptz[]) AS x(names..., authsync_at))
std::string unnest_cte(const std::vector<std::string>& names) {
    std::string args, cols;
    std::size_t n = 0;
    for (const auto& name : names) {
        args += fmt::format("${}::text[], ", ++n);
        cols += quote_identifier(name) + ", ";
    }
    return fmt::format("x AS (SELECT * FROM unnest({}${}::timestamptz[]) AS x({}authsync_at))",
                       args, n + 1, cols);
}

// The affected targets of `changed`, one row per (target, key) with the latest change time.
std::string affected_select(const MirrorSource& s) {
    std::string branches;
    for (const auto& a : s.affects) {
        if (!branches.empty()) branches += " UNION ALL ";
        branches += fmt::format(
            "SELECT {}::text AS target, ({})::text AS key, changed.authsync_at "
            "AS at FROM changed {}",
            quote_literal(a.target), a.key, a.join);
    }
    if (branches.empty()) {
        branches = "SELECT NULL::text AS target, NULL::text AS key, NULL::timestamptz AS at";
    }
    return "SELECT a.target, a.key, (extract(epoch FROM max(a.at)) * 1000000)::int8::text FROM (" +
           branches + ") AS a WHERE a.key IS NOT NULL GROUP BY 1, 2";
}

std::string mirror_table(const MirrorSource& s) {
    return quote_qualified("authsync", s.mirror_table);
}

// The mirror rows a change replaces, as they were (with the change's time), and the tail that
// puts them with the new rows and selects what both affect.
std::string old_rows_cte(const MirrorSource& s) {
    return fmt::format("old AS (SELECT {}, x.authsync_at FROM {} AS m JOIN x ON {})",
                       column_list(s, "m."), mirror_table(s), key_match(s, "m", "x"));
}

std::string changed_and_affected(const MirrorSource& s) {
    return "changed AS (SELECT * FROM old UNION ALL SELECT * FROM new) " + affected_select(s);
}

std::string upsert_sql(const MirrorSource& s) {
    std::vector<std::string> names;
    std::string casts, sets;
    for (const auto& c : s.columns) {
        names.push_back(c.name);
        casts += fmt::format("x.{}::{}, ", quote_identifier(c.name), c.type);
        if (std::find(s.key_columns.begin(), s.key_columns.end(), c.name) == s.key_columns.end()) {
            sets += fmt::format("{0} = EXCLUDED.{0}, ", quote_identifier(c.name));
        }
    }
    std::string keys;
    for (const auto& k : s.key_columns) keys += (keys.empty() ? "" : ", ") + quote_identifier(k);
    const auto m = mirror_table(s);
    return fmt::format(
        "WITH {x}, {old}, "
        "new AS (INSERT INTO {m} AS m ({cols}, authsync_changed_at) SELECT {casts}x.authsync_at "
        "FROM x{filter} ON CONFLICT ({keys}) DO UPDATE SET {sets}authsync_changed_at = "
        "EXCLUDED.authsync_changed_at RETURNING {mcols}, m.authsync_changed_at), {tail}",
        fmt::arg("x", unnest_cte(names)), fmt::arg("old", old_rows_cte(s)),
        fmt::arg("mcols", column_list(s, "m.")), fmt::arg("m", m),
        fmt::arg("cols", column_list(s, "")), fmt::arg("casts", casts), fmt::arg("keys", keys),
        fmt::arg("sets", sets), fmt::arg("tail", changed_and_affected(s)),
        fmt::arg("filter",
                 s.mirror_filter.empty() ? std::string() : " WHERE (" + s.mirror_filter + ")"));
}

// An update of the present columns only: unchanged TOAST keeps the mirror's value, and a row
// the mirror lacks is reported rather than inserted with NULLs.
std::string update_sql(const MirrorSource& s, const std::vector<bool>& present) {
    std::vector<std::string> names;
    std::string sets;
    for (std::size_t i = 0; i < s.columns.size(); ++i) {
        if (!present[i]) continue;
        const auto& c = s.columns[i];
        names.push_back(c.name);
        if (std::find(s.key_columns.begin(), s.key_columns.end(), c.name) == s.key_columns.end()) {
            sets += fmt::format("{0} = x.{0}::{1}, ", quote_identifier(c.name), c.type);
        }
    }
    std::string key_text;
    for (const auto& k : s.key_columns)
        key_text += (key_text.empty() ? "x." : ", x.") + quote_identifier(k);
    const auto m = mirror_table(s);
    return fmt::format(
        "WITH {x}, {old}, "
        "new AS (UPDATE {m} AS m SET {sets}authsync_changed_at = x.authsync_at FROM x WHERE "
        "{match} RETURNING {mcols}, m.authsync_changed_at), {tail} "
        "UNION ALL SELECT '', concat_ws(':', {key_text}), NULL FROM x WHERE NOT EXISTS "
        "(SELECT 1 FROM {m} AS m WHERE {match}){filter}",
        fmt::arg("x", unnest_cte(names)), fmt::arg("old", old_rows_cte(s)),
        fmt::arg("mcols", column_list(s, "m.")), fmt::arg("m", m),
        fmt::arg("match", key_match(s, "m", "x")), fmt::arg("sets", sets),
        fmt::arg("tail", changed_and_affected(s)), fmt::arg("key_text", key_text),
        fmt::arg("filter",
                 s.mirror_filter.empty() ? std::string() : " AND (" + s.mirror_filter + ")"));
}

std::string delete_sql(const MirrorSource& s) {
    return fmt::format(
        "WITH {x}, changed AS (DELETE FROM {m} AS m USING x WHERE {match} RETURNING {mcols}, "
        "x.authsync_at) {affected}",
        fmt::arg("x", unnest_cte(s.key_columns)), fmt::arg("m", mirror_table(s)),
        fmt::arg("match", key_match(s, "m", "x")), fmt::arg("mcols", column_list(s, "m.")),
        fmt::arg("affected", affected_select(s)));
}

}  // namespace

MirrorBatch::Table& MirrorBatch::table_for(const mapping::BoundMirror& mirror) {
    const auto name = mirror.source().source_name();
    auto it = tables_.find(name);
    if (it == tables_.end()) {
        it = tables_.emplace(name, Table{mirror.source(), mirror.key_indexes(), {}}).first;
    }
    return it->second;
}

void MirrorBatch::upsert(const mapping::BoundMirror& mirror, mapping::MirrorRow row,
                         PgTimestamp commit_time, Lsn source) {
    auto& table = table_for(mirror);
    auto key = mirror.key_of(row);
    auto [it, inserted] = table.rows.try_emplace(encode_key(key));
    Pending& p = it->second;
    if (inserted) {
        ++rows_;
    } else {
        bytes_ -= std::min(bytes_, row_bytes(p.row));
    }
    if (!inserted && !p.deleted) {
        p.row.merge_from(row);
    } else {
        p.row = std::move(row);
    }
    p.deleted = false;
    p.key = std::move(key);
    p.commit_time = commit_time;
    p.source = source;
    bytes_ += row_bytes(p.row);
}

void MirrorBatch::remove(const mapping::BoundMirror& mirror, std::vector<std::string> key,
                         PgTimestamp commit_time, Lsn source) {
    auto& table = table_for(mirror);
    auto [it, inserted] = table.rows.try_emplace(encode_key(key));
    Pending& p = it->second;
    if (inserted) {
        ++rows_;
    } else {
        bytes_ -= std::min(bytes_, row_bytes(p.row));
    }
    p.deleted = true;
    p.row = mapping::MirrorRow{};
    p.key = std::move(key);
    p.commit_time = commit_time;
    p.source = source;
    bytes_ += row_bytes(p.row);
}

void MirrorBatch::clear() {
    tables_.clear();
    rows_ = 0;
    bytes_ = 0;
}

std::vector<Statement> MirrorBatch::statements() const {
    std::vector<Statement> out;
    for (const auto& [name, table] : tables_) {
        const auto& s = table.source;
        const std::size_t n = s.columns.size();
        auto full = Arrays::text_then_time(n);
        auto deletes = Arrays::text_then_time(s.key_columns.size());
        std::map<std::vector<bool>, Arrays> partial;  // by the columns present
        for (const auto& [encoded, p] : table.rows) {
            const auto key = display_key(p.key);
            const auto at = p.commit_time.to_iso8601();
            if (p.deleted) {
                std::vector<std::optional<std::string>> values(p.key.begin(), p.key.end());
                values.emplace_back(at);
                deletes.add(key, p.source, std::move(values));
                continue;
            }
            if (!p.row.partial()) {
                auto values = p.row.values;
                values.emplace_back(at);
                full.add(key, p.source, std::move(values));
                continue;
            }
            std::vector<std::optional<std::string>> values;
            for (std::size_t i = 0; i < n; ++i) {
                if (p.row.present[i]) values.push_back(p.row.values[i]);
            }
            values.emplace_back(at);
            const std::size_t width = values.size() - 1;
            partial.try_emplace(p.row.present, Arrays::text_then_time(width))
                .first->second.add(key, p.source, std::move(values));
        }
        if (!full.empty()) {
            out.push_back(full.statement(upsert_sql(s), Statement::Kind::MirrorUpsert, name));
        }
        for (const auto& [present, arrays] : partial) {
            out.push_back(
                arrays.statement(update_sql(s, present), Statement::Kind::MirrorUpsert, name));
        }
        if (!deletes.empty()) {
            out.push_back(deletes.statement(delete_sql(s), Statement::Kind::MirrorDelete, name));
        }
    }
    return out;
}

Statement mirror_truncate_statement(const mapping::MirrorSource& source, PgTimestamp commit_time,
                                    const std::string& condition) {
    Statement st;
    st.kind = Statement::Kind::MirrorDelete;
    st.sql = fmt::format(
        "WITH changed AS (DELETE FROM {} AS m{} RETURNING {}, $1::timestamptz AS "
        "authsync_at) {}",
        mirror_table(source), condition.empty() ? "" : " WHERE " + condition,
        column_list(source, "m."), affected_select(source));
    st.params.emplace_back(commit_time.to_iso8601());
    return st;
}

namespace {

constexpr std::string_view kAtExpression =
    "(timestamptz 'epoch' + a.at_us * interval '1 microsecond')";

// What a recompute returns, one row: (target, rows written, rows removed). A users target's
// soft delete counts as removed, also one written with its deleted_at set; rows found equal to
// what was computed count as neither.
std::string counts_select(const mapping::ComposedTarget& t) {
    return fmt::format(
        "SELECT {}::text, (SELECT count(*) FROM upserted WHERE NOT gone), "
        "(SELECT count(*) FROM removed) + (SELECT count(*) FROM upserted WHERE gone)",
        quote_literal(t.target_name()));
}

std::string recompute_sql(const mapping::ComposedTarget& t, const std::string& affected) {
    const auto table = quote_qualified(t.target_schema, t.target_table);
    if (t.kind == mapping::TargetKind::Users) {
        return fmt::format(
            "WITH affected AS ({affected}), computed AS ({compute}), "
            "upserted AS (INSERT INTO {table} AS t (raw_json, updated_at, deleted_at) "
            "SELECT DISTINCT ON (c.id) c.raw_json, {at}, (to_jsonb(c) ->> "
            "'deleted_at')::timestamptz "
            "FROM computed AS c JOIN affected AS a ON a.key = c.id ORDER BY c.id, c.raw_json::text "
            "ON CONFLICT (id) DO UPDATE SET raw_json = EXCLUDED.raw_json, updated_at = "
            "EXCLUDED.updated_at, deleted_at = EXCLUDED.deleted_at WHERE t.raw_json IS DISTINCT "
            "FROM EXCLUDED.raw_json OR t.deleted_at IS DISTINCT FROM EXCLUDED.deleted_at "
            "RETURNING t.deleted_at IS NOT NULL AS gone), "
            "removed AS (UPDATE {table} AS t SET deleted_at = {at} FROM affected AS a WHERE t.id = "
            "a.key AND t.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM computed AS c WHERE "
            "c.id = a.key) RETURNING 1) {counts}",
            fmt::arg("affected", affected), fmt::arg("compute", t.compute),
            fmt::arg("table", table), fmt::arg("at", kAtExpression),
            fmt::arg("counts", counts_select(t)));
    }
    std::string cols, excluded_cols, t_cols, sets, keys, key_match;
    for (const auto& c : t.columns) {
        const auto q = quote_identifier(c);
        cols += (cols.empty() ? "" : ", ") + q;
        const bool is_key =
            std::find(t.key_columns.begin(), t.key_columns.end(), c) != t.key_columns.end();
        if (!is_key) {
            sets += (sets.empty() ? "" : ", ") + q + " = EXCLUDED." + q;
            t_cols += (t_cols.empty() ? "t." : ", t.") + q;
            excluded_cols += (excluded_cols.empty() ? "EXCLUDED." : ", EXCLUDED.") + q;
        }
    }
    for (const auto& k : t.key_columns) {
        const auto q = quote_identifier(k);
        keys += (keys.empty() ? "" : ", ") + q;
        key_match += (key_match.empty() ? "" : " AND ") + ("c." + q + " = t." + q);
    }
    std::string conflict = "DO NOTHING";
    if (!sets.empty()) {
        conflict = fmt::format("DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})", sets,
                               t_cols, excluded_cols);
    }
    return fmt::format(
        "WITH affected AS ({affected}), computed AS ({compute}), "
        "removed AS (DELETE FROM {table} AS t USING affected AS a WHERE t.{group}::text = a.key "
        "AND "
        "NOT EXISTS (SELECT 1 FROM computed AS c WHERE {key_match}) RETURNING 1), "
        "upserted AS (INSERT INTO {table} AS t ({cols}) SELECT DISTINCT ON ({keys}) {cols} FROM "
        "computed ON CONFLICT ({keys}) {conflict} RETURNING false AS gone) {counts}",
        fmt::arg("affected", affected), fmt::arg("compute", t.compute), fmt::arg("table", table),
        fmt::arg("group", quote_identifier(t.group_column)), fmt::arg("key_match", key_match),
        fmt::arg("cols", cols), fmt::arg("keys", keys), fmt::arg("conflict", conflict),
        fmt::arg("counts", counts_select(t)));
}

}  // namespace

Statement recompute_statement(const mapping::ComposedTarget& target, const std::string& mapping,
                              const AffectedKeys& keys) {
    Arrays arrays({ArrayType::Text, ArrayType::Int8});
    for (const auto& [key, at] : keys) arrays.add(key, {key, std::to_string(at)});
    return arrays.statement(
        recompute_sql(target, "SELECT * FROM unnest($1::text[], $2::int8[]) AS a(key, at_us)"),
        Statement::Kind::Recompute, mapping);
}

std::string recompute_all_sql(const mapping::ComposedTarget& target) {
    const auto table = quote_qualified(target.target_schema, target.target_table);
    std::string held =
        fmt::format("SELECT {}::text FROM {}", quote_identifier(target.group_column), table);
    if (target.kind == mapping::TargetKind::Users) held += " WHERE deleted_at IS NULL";
    return recompute_sql(target, fmt::format("SELECT k.key, $1::int8 AS at_us FROM (({}) UNION "
                                             "({})) AS k(key)",
                                             target.all_keys, held));
}

std::string mirror_ddl(const mapping::MirrorSource& s) {
    std::string cols, keys;
    for (const auto& c : s.columns)
        cols += fmt::format("  {} {},\n", quote_identifier(c.name), c.type);
    for (const auto& k : s.key_columns) keys += (keys.empty() ? "" : ", ") + quote_identifier(k);
    std::string ddl = fmt::format(
        "CREATE TABLE IF NOT EXISTS {} (\n{}  authsync_changed_at timestamptz,\n  PRIMARY KEY "
        "({}));\n",
        mirror_table(s), cols, keys);
    for (const auto& index : s.indexes) {
        std::string icols, name = s.mirror_table;
        for (const auto& c : index) {
            icols += (icols.empty() ? "" : ", ") + quote_identifier(c);
            name += "_" + c;
        }
        if (name.size() > 59) name.resize(59);
        ddl += fmt::format("CREATE INDEX IF NOT EXISTS {} ON {} ({});\n",
                           quote_identifier(name + "_idx"), mirror_table(s), icols);
    }
    return ddl;
}

}  // namespace authsync::apply
