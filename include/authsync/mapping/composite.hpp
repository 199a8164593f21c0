// Composite mappings: target rows built from several provider tables (presets such as
// stack-auth; see docs/mapping.md and docs/ARCHITECTURE.md, "Composite mappings").
//
// Each contributing provider table is mirrored, with just the columns the preset needs, into a
// table of the target's `authsync` schema. A change to a mirrored row names the target rows it
// affects (SQL over the changed mirror rows, `affects`); those are recomputed from the mirrors
// by the preset's SQL (`compute`) in the same target transaction as the change. Plain data and
// pure helpers: the SQL is built in apply/composite.hpp and run by the engine.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "authsync/pgoutput/messages.hpp"

namespace authsync::mapping {

struct MirrorColumn {
    std::string name;       // the provider's column, exact
    std::string type;       // the mirror column's SQL type (the value is cast from its text)
    bool optional = false;  // may be absent on the provider (older versions): mirrored as NULL
};

// Which target rows a change to a mirrored row affects: `key` is an SQL expression of text
// type over the relation `changed` (the mirror rows before and after the change) and the
// optional `join` clauses, e.g. key `tm."projectUserId"::text`, join `JOIN authsync.t tm ON ...`.
struct Affects {
    std::string target;  // a ComposedTarget's name
    std::string key;
    std::string join;
};

struct MirrorSource {
    std::string source_schema = "public";
    std::string source_table;
    std::string mirror_table;  // in schema authsync
    std::vector<std::string> key_columns;
    std::vector<MirrorColumn> columns;  // the key columns among them
    // Publication row filter (SQL over the provider table; {{name}} placeholders resolved by
    // resolve()); empty: every row.
    std::string row_filter;
    // The columns the row filter reads. PostgreSQL refuses UPDATE and DELETE on a table whose
    // publication row filter reads columns outside its replica identity: where they are not
    // all in it, the table is published unfiltered and `compute` must scope the rows itself.
    std::vector<std::string> row_filter_columns;
    // Which streamed rows the mirror keeps: SQL over `x`, the incoming rows with every column
    // as text (e.g. `x."tenancyId" = {{tenancy_id}}`); empty: all. For tables that must be
    // published unfiltered, so that other scopes' rows are not stored in the target.
    std::string mirror_filter;
    // Which streamed rows belong to this scope, for the router (fan-out: several targets read
    // one provider table): column -> the name of a lookup or option whose value the column's
    // text must equal; `scope_values` holds those values once resolved. Empty: every row.
    std::vector<std::pair<std::string, std::string>> scope;
    std::vector<std::pair<std::string, std::string>> scope_values;
    std::vector<std::vector<std::string>> indexes;  // extra mirror indexes (column lists)
    std::vector<Affects> affects;

    std::string source_name() const { return source_schema + "." + source_table; }
    std::string mirror_name() const { return "authsync." + mirror_table; }
    const MirrorColumn* column(std::string_view name) const;
};

enum class TargetKind {
    Users,  // a users_sync table: compute yields (id, raw_json[, deleted_at]); a missing id is
            // soft-deleted
    Rows,   // a plain table: compute yields `columns`; rows of an affected group not yielded go
};

struct ComposedTarget {
    std::string name;  // what `affects` refers to
    std::string target_schema = "neon_auth";
    std::string target_table;
    TargetKind kind = TargetKind::Users;
    std::string group_column = "id";       // the column the affected keys name
    std::vector<std::string> key_columns;  // Rows: the table's primary key
    std::vector<std::string> columns;      // Rows: what compute yields, in order
    // SELECT over `affected(key text)`; Users: yields (id text, raw_json jsonb).
    std::string compute;
    // SELECT of every group key the mirrors hold (the initial copy recomputes them all).
    std::string all_keys;
    std::string ddl;  // Rows: CREATE TABLE IF NOT EXISTS ... (Users: Neon's users_sync DDL)

    std::string target_name() const { return target_schema + "." + target_table; }
};

struct CompositeRule {
    std::string preset;       // e.g. "stack-auth"
    std::string preset_file;  // where it was read, for messages
    // Values looked up on the provider at start (one text value each), then usable as
    // {{name}} in the rule's SQL: e.g. a tenancy id from a project id.
    std::vector<std::pair<std::string, std::string>> lookups;  // name -> SELECT
    std::vector<MirrorSource> sources;
    std::vector<ComposedTarget> targets;
    std::map<std::string, std::string> values;   // the lookups' values, once resolved
    std::map<std::string, std::string> options;  // the preset_options in force (defaults too)

    const ComposedTarget* target(std::string_view name) const;
    // Replaces {{name}} in all of the rule's SQL with the quoted literal of `values[name]`.
    // Throws ConfigError naming the placeholder when a value is missing.
    void resolve(const std::map<std::string, std::string>& values);
    bool resolved() const;
    // What the mirrors were copied for: the preset, its options and its lookups' values. A
    // mirror copied under another scope (another project, realm, table) must be copied again.
    std::string scope() const;
};

// Calls f(sql) for every SQL text of `rule` (filters, affects, compute, all_keys, ddl); `Rule`
// is CompositeRule or const CompositeRule.
template <typename Rule, typename F>
void for_each_sql(Rule& rule, F&& f) {
    for (auto& s : rule.sources) {
        f(s.row_filter);
        f(s.mirror_filter);
        for (auto& a : s.affects) {
            f(a.key);
            f(a.join);
        }
    }
    for (auto& t : rule.targets) {
        f(t.compute);
        f(t.all_keys);
        f(t.ddl);
    }
}

// Replaces each {{name}} in `text` whose name is in `values` with the SQL literal of its value;
// other placeholders stay. Names are [a-z_][a-z0-9_]*.
std::string substitute(std::string_view text, const std::map<std::string, std::string>& values);
// The first {{name}} left in `text`, if any.
std::optional<std::string> first_placeholder(std::string_view text);

// A mirrored row as the stream sent it: one value per MirrorSource column, in order.
struct MirrorRow {
    std::vector<std::optional<std::string>> values;  // nullopt: SQL NULL
    std::vector<bool> present;  // false: unchanged TOAST, the mirror keeps its value
    bool partial() const;
    void merge_from(const MirrorRow& newer);  // newer present values win
};

// A MirrorSource bound to a relation's columns (rebind on every Relation message).
class BoundMirror {
public:
    // Throws MappingError naming the relation and column when a key or required column is
    // absent, or the relation is not the source's table.
    static BoundMirror bind(const MirrorSource& source, const pgoutput::Relation& relation);

    const MirrorSource& source() const { return source_; }
    // The row image of a new tuple; `old_tuple` (may be null) supplies key columns that the new
    // tuple sent as unchanged TOAST.
    MirrorRow map_new(const pgoutput::TupleData& tuple, const pgoutput::TupleData* old_tuple) const;
    // The key column values of an old tuple (Delete, Update's 'K'/'O'); throws MappingError when
    // a key column is null or missing there.
    std::vector<std::string> key_of_old(const pgoutput::TupleData& old_tuple) const;
    // The key values of a row image, in key order.
    std::vector<std::string> key_of(const MirrorRow& row) const;
    // The index in source().columns of each key column.
    const std::vector<std::size_t>& key_indexes() const { return key_indexes_; }

private:
    MirrorSource source_;
    std::string relation_name_;
    std::size_t column_count_ = 0;
    std::vector<int> positions_;  // per mirror column: position in the relation, -1 absent
    std::vector<std::size_t> key_indexes_;
};

}  // namespace authsync::mapping
