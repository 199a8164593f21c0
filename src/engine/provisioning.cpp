#include "authsync/engine/provisioning.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "authsync/apply/composite.hpp"
#include "authsync/core/sql.hpp"
#include "authsync/engine/log.hpp"
#include "authsync/pg/error_class.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace authsync::engine {

using asio::awaitable;

std::string users_sync_ddl(const std::string& schema, const std::string& table) {
    const auto target = quote_qualified(schema, table);
    // Neon Auth's definition, to the letter: raw_json plus columns generated from it.
    return fmt::format(
        "CREATE TABLE IF NOT EXISTS {target} (\n"
        "  raw_json jsonb NOT NULL,\n"
        "  id text GENERATED ALWAYS AS ((raw_json ->> 'id')) STORED NOT NULL,\n"
        "  name text GENERATED ALWAYS AS ((raw_json ->> 'display_name')) STORED,\n"
        "  email text GENERATED ALWAYS AS ((raw_json ->> 'primary_email')) STORED,\n"
        "  created_at timestamptz GENERATED ALWAYS AS (to_timestamp(trunc(((raw_json ->> "
        "'signed_up_at_millis'))::bigint)::double precision / 1000)) STORED,\n"
        "  updated_at timestamptz,\n"
        "  deleted_at timestamptz,\n"
        "  PRIMARY KEY (id));\n"
        "CREATE INDEX IF NOT EXISTS {index} ON {target} (deleted_at);\n",
        fmt::arg("target", target), fmt::arg("index", quote_identifier(table + "_deleted_at_idx")));
}

namespace {

// Adds a column to a table of authsync's schema when it lacks it. Not ALTER TABLE ... ADD
// COLUMN IF NOT EXISTS: that takes an ACCESS EXCLUSIVE lock even when the column exists, which
// gives the start-up an xid and a synchronous commit, and so flushes the target's WAL.
std::string add_column_ddl(const std::string& table, const std::string& column,
                           const std::string& type) {
    return fmt::format(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
        "'authsync.{0}'::regclass AND attname = '{1}' AND NOT attisdropped) THEN ALTER TABLE "
        "authsync.{0} ADD COLUMN {1} {2}; END IF; END $$;\n",
        table, column, type);
}

}  // namespace

std::string state_ddl() {
    std::string ddl =
        "CREATE TABLE IF NOT EXISTS authsync.checkpoint (\n"
        "  slot text PRIMARY KEY,\n"
        "  end_lsn pg_lsn NOT NULL,\n"
        "  commit_time timestamptz,\n"
        "  updated_at timestamptz NOT NULL DEFAULT now());\n";
    // Set by every write since idle acknowledgements are recorded (Checkpoint).
    ddl += add_column_ddl("checkpoint", "covers_acknowledged", "boolean NOT NULL DEFAULT false");
    // Changes the target rejected, with apply.on_error: dead_letter.
    ddl +=
        "CREATE TABLE IF NOT EXISTS authsync.dead_letter (\n"
        "  id bigserial PRIMARY KEY,\n"
        "  slot text NOT NULL,\n"
        "  lsn pg_lsn,\n"
        "  mapping text NOT NULL,\n"
        "  target text NOT NULL,\n"
        "  key text NOT NULL,\n"
        "  op text NOT NULL CHECK (op IN ('upsert', 'delete')),\n"
        "  payload jsonb,\n"
        "  change_time timestamptz,\n"
        "  error text NOT NULL,\n"
        "  sqlstate text,\n"
        "  attempts int NOT NULL DEFAULT 1,\n"
        "  created_at timestamptz NOT NULL DEFAULT now(),\n"
        "  retried_at timestamptz);\n";
    // A payload jsonb cannot hold (\u0000, ill-formed UTF-8 shown as \xHH) is kept as text.
    ddl += add_column_ddl("dead_letter", "payload_text", "text");
    // What each preset's mirrors were copied for (CompositeRule::scope).
    ddl +=
        "CREATE TABLE IF NOT EXISTS authsync.preset_scope (\n"
        "  slot text NOT NULL,\n"
        "  preset text NOT NULL,\n"
        "  scope text NOT NULL,\n"
        "  copied_at timestamptz NOT NULL DEFAULT now(),\n"
        "  PRIMARY KEY (slot, preset));\n";
    return ddl;
}

awaitable<std::optional<SlotInfo>> find_slot(pg::AsyncConnection& source, const std::string& slot) {
    auto r = co_await source.query_params(
        "SELECT plugin, database, active, wal_status, confirmed_flush_lsn::text "
        "FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'logical'",
        pg::params(slot));
    if (r.rows() == 0) co_return std::nullopt;
    SlotInfo info;
    info.plugin = r.get_optional(0, 0).value_or("");
    info.database = r.get_optional(0, 1).value_or("");
    info.active = r.get(0, 2) == "t";
    info.wal_status = r.get_optional(0, 3);
    if (auto lsn = r.get_optional(0, 4)) info.confirmed_flush = Lsn::parse(*lsn);
    co_return info;
}

awaitable<bool> publication_exists(pg::AsyncConnection& source, const std::string& name) {
    auto r = co_await source.query_params("SELECT 1 FROM pg_publication WHERE pubname = $1",
                                          pg::params(name));
    co_return r.rows() > 0;
}

namespace {

awaitable<void> resolve_composites(pg::AsyncConnection& source, const std::string& target,
                                   std::vector<mapping::CompositeRule>& composites) {
    for (auto& composite : composites) {
        std::map<std::string, std::string> values;
        for (const auto& [name, sql] : composite.lookups) {
            pg::Result r;
            try {
                r = co_await source.query(sql);
            } catch (const pg::PgError& e) {
                if (pg::classify(e) == pg::ErrorClass::Transient) throw;
                throw LookupError(
                    fmt::format("{}preset {}: lookup {} failed on the source: {} (is "
                                "this the provider's database?)",
                                target, composite.preset, name, e.what()));
            }
            if (r.rows() != 1 || r.columns() != 1 || r.is_null(0, 0)) {
                throw LookupError(fmt::format(
                    "{}preset {}: lookup {} found {} rows on the source, expected one; check "
                    "the preset_options (e.g. the project id and branch)",
                    target, composite.preset, name, r.rows()));
            }
            values[name] = std::string(r.get(0, 0));
        }
        composite.resolve(values);
    }
}

}  // namespace

// A table mapping's scope values as the provider writes them: the router compares the stream's
// text with them, and e.g. a uuid written in capitals would otherwise match no row it streams
// while the row filter and the copy (which compare typed values) select them all.
awaitable<void> canonicalize_scopes(pg::AsyncConnection& source, const std::string& about,
                                    std::vector<mapping::MappingRule>& mappings) {
    for (auto& m : mappings) {
        for (auto& [column, value] : m.scope) {
            auto type = co_await source.query_params(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE "
                "a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT "
                "a.attisdropped",
                pg::params(quote_qualified(m.source_schema, m.source_table), column));
            if (type.rows() == 0) continue;  // a missing table or column is reported elsewhere
            const std::string type_name(type.get(0, 0));
            std::optional<std::string> canonical;
            try {
                auto r = co_await source.query_params("SELECT $1::" + type_name + "::text",
                                                      pg::params(value));
                canonical = std::string(r.get(0, 0));
            } catch (const pg::PgError& e) {
                // Data exceptions (class 22): the value does not read as the column's type.
                // The server's message quotes the value: it is not repeated.
                if (e.sqlstate().rfind("22", 0) != 0) throw;
            }
            if (!canonical) {
                throw LookupError(fmt::format("{}scope of {}: the value for column {} is not a {}",
                                              about, m.source_name(), column, type_name));
            }
            value = *canonical;
        }
    }
}

awaitable<void> resolve_lookups(pg::AsyncConnection& source, config::Config& config) {
    const bool named =
        config.targets.size() > 1 ||
        (config.targets.size() == 1 && config.targets.front().name != config::kDefaultTargetName);
    for (auto& t : config.targets) {
        // A named local: GCC 12 frees a conditional's temporary twice across a co_await.
        std::string about;
        if (named) about = "target " + t.name + ": ";
        co_await resolve_composites(source, about, t.composites);
        co_await canonicalize_scopes(source, about, t.mappings);
    }
    // The top-level form is the first target's (Config keeps the two alike).
    if (!config.targets.empty()) {
        config.composites = config.targets.front().composites;
        config.mappings = config.targets.front().mappings;
    }
}

awaitable<void> connect_and_resolve(pg::AsyncConnection& source, config::Config& config,
                                    const std::string& application_name) {
    co_await source.connect(config.source.dsn, application_name);
    try {
        co_await resolve_lookups(source, config);
    } catch (const LookupError& e) {
        throw FatalError(e.what());
    }
}

awaitable<std::vector<std::string>> existing_columns(pg::AsyncConnection& source,
                                                     const std::string& schema,
                                                     const std::string& table,
                                                     const std::vector<std::string>& names) {
    auto r = co_await source.query_params(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 "
        "AND a.attnum > 0 AND NOT a.attisdropped",
        pg::params(schema, table));
    std::vector<std::string> out;
    for (const auto& name : names) {
        if (std::find(out.begin(), out.end(), name) != out.end()) continue;
        for (int i = 0; i < r.rows(); ++i) {
            if (r.get(i, 0) == name) out.push_back(name);
        }
    }
    co_return out;
}

awaitable<std::vector<std::string>> existing_columns(pg::AsyncConnection& source,
                                                     const mapping::MirrorSource& s) {
    std::vector<std::string> names;
    for (const auto& c : s.columns) names.push_back(c.name);
    co_return co_await existing_columns(source, s.source_schema, s.source_table, names);
}

std::vector<std::string> mapping_columns(const mapping::MappingRule& m) {
    std::vector<std::string> out;
    auto add = [&](const std::string& c) {
        if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
    };
    for (const auto& k : m.key_columns) add(k);
    for (const auto& f : m.fields) add(f.column);
    for (const auto& [column, value] : m.scope) add(column);
    return out;
}

namespace {

// A provider table's replica identity: FULL, or its columns (primary key or USING INDEX).
struct Identity {
    bool full = false;
    std::vector<std::string> columns;

    bool covers(const std::vector<std::string>& wanted) const {
        if (full) return true;
        return std::all_of(wanted.begin(), wanted.end(), [&](const std::string& c) {
            return std::find(columns.begin(), columns.end(), c) != columns.end();
        });
    }
};

awaitable<Identity> replica_identity(pg::AsyncConnection& source, const std::string& schema,
                                     const std::string& table) {
    auto r = co_await source.query_params(
        "SELECT c.relreplident = 'f', a.attname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_index i ON i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary) "
        "OR (c.relreplident = 'i' AND i.indisreplident)) "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey) "
        "WHERE n.nspname = $1 AND c.relname = $2",
        pg::params(schema, table));
    Identity id;
    for (int i = 0; i < r.rows(); ++i) {
        id.full = r.get(i, 0) == "t";
        if (!r.is_null(i, 1)) id.columns.emplace_back(r.get(i, 1));
    }
    co_return id;
}

awaitable<Identity> replica_identity(pg::AsyncConnection& source, const mapping::MirrorSource& s) {
    co_return co_await replica_identity(source, s.source_schema, s.source_table);
}

// The column list a publication needs for authsync to read `wanted` of a provider table: those
// of them the table has, in that order, then its replica identity's columns (PostgreSQL
// refuses UPDATE and DELETE on a table whose column list lacks one of them). Under REPLICA
// IDENTITY FULL a list would have to name every column: `identity.full` says so.
struct PublishedColumns {
    Identity identity;
    std::vector<std::string> read;     // the wanted columns the table has
    std::vector<std::string> columns;  // read, then the identity's columns
};

awaitable<PublishedColumns> published_columns(pg::AsyncConnection& source,
                                              const std::string& schema, const std::string& table,
                                              const std::vector<std::string>& wanted) {
    PublishedColumns out;
    out.identity = co_await replica_identity(source, schema, table);
    out.read = co_await existing_columns(source, schema, table, wanted);
    out.columns = out.read;
    for (const auto& c : out.identity.columns) {
        if (std::find(out.columns.begin(), out.columns.end(), c) == out.columns.end()) {
            out.columns.push_back(c);
        }
    }
    co_return out;
}

std::string column_list(const std::vector<std::string>& columns) {
    std::string list;
    for (const auto& c : columns) list += (list.empty() ? "" : ", ") + quote_identifier(c);
    return list;
}

awaitable<bool> has_column_lists(pg::AsyncConnection& source) {
    auto v = co_await source.query("SELECT current_setting('server_version_num')::int >= 150000");
    co_return v.get(0, 0) == "t";
}

// A warning when publication `pubname` sends columns of a table beyond `wanted` and the
// identity, and a problem when it lacks one of `wanted` (the mapping could not read it). None
// before PostgreSQL 15 (no column lists, no attnames) or when the table is not published.
awaitable<void> check_published_columns(pg::AsyncConnection& source, const std::string& pubname,
                                        const std::string& schema, const std::string& table,
                                        const std::vector<std::string>& wanted,
                                        std::vector<Problem>& problems) {
    if (!co_await has_column_lists(source)) co_return;
    auto r = co_await source.query_params(
        "SELECT a FROM pg_publication_tables t, unnest(t.attnames) AS a "
        "WHERE t.pubname = $1 AND t.schemaname = $2 AND t.tablename = $3",
        pg::params(pubname, schema, table));
    if (r.rows() == 0) co_return;
    std::vector<std::string> sent;
    for (int i = 0; i < r.rows(); ++i) sent.emplace_back(r.get(i, 0));
    const auto need = co_await published_columns(source, schema, table, wanted);
    const auto name = quote_qualified(schema, table);
    std::string extra, missing;
    for (const auto& c : sent) {
        if (std::find(need.columns.begin(), need.columns.end(), c) == need.columns.end()) {
            extra += (extra.empty() ? "" : ", ") + c;
        }
    }
    for (const auto& c : need.columns) {
        if (std::find(sent.begin(), sent.end(), c) == sent.end()) {
            missing += (missing.empty() ? "" : ", ") + c;
        }
    }
    // (Not a conditional expression over strings: GCC 12 coroutines.)
    std::string hint = fmt::format(
        "ALTER PUBLICATION {} SET TABLE {} ({}), naming the "
        "publication's other tables too (SET TABLE replaces them all)",
        quote_identifier(pubname), name, column_list(need.columns));
    if (need.identity.full) {
        hint = fmt::format(
            "ALTER TABLE {} REPLICA IDENTITY DEFAULT (or USING INDEX), then "
            "{}",
            name, hint);
    }
    if (!missing.empty()) {
        problems.push_back({fmt::format("source: publication \"{}\" does not send column(s) {} "
                                        "of {}, which the mapping reads",
                                        pubname, missing, name),
                            hint});
    }
    if (!extra.empty()) {
        problems.push_back({fmt::format("source: publication \"{}\" sends column(s) {} of {} "
                                        "that no mapping reads (they reach authsync's memory "
                                        "and `authsync peek`)",
                                        pubname, extra, name),
                            hint, true});
    }
}

// One FOR TABLE entry of the publication, merged over every target that reads the table
// (fan-out): the union of their columns, and the OR of their row filters unless one of them
// needs every row.
struct PublicationEntry {
    std::string table;                 // quoted, qualified
    std::vector<std::string> columns;  // the column list; unused when whole
    bool whole = false;                // published with all its columns
    std::vector<std::string> filters;  // row filters, OR'ed
    bool unfiltered = false;           // some target reads every row
};

struct PublicationEntries {
    std::vector<PublicationEntry> entries;  // in the order first named

    PublicationEntry& entry(const std::string& table) {
        for (auto& e : entries) {
            if (e.table == table) return e;
        }
        entries.push_back(PublicationEntry{table, {}, false, {}, false});
        return entries.back();
    }
    static void add_columns(PublicationEntry& e, const std::vector<std::string>& columns) {
        for (const auto& c : columns) {
            if (std::find(e.columns.begin(), e.columns.end(), c) == e.columns.end()) {
                e.columns.push_back(c);
            }
        }
    }
    std::string sql() const {
        std::string tables;
        for (const auto& e : entries) {
            if (!tables.empty()) tables += ", ";
            tables += e.table;
            if (!e.whole && !e.columns.empty()) tables += " (" + column_list(e.columns) + ")";
            if (e.unfiltered || e.filters.empty()) continue;
            std::string where;
            for (const auto& f : e.filters) where += (where.empty() ? "(" : " OR (") + f + ")";
            tables += e.filters.size() == 1 ? " WHERE " + where : " WHERE (" + where + ")";
        }
        return tables;
    }
};

// Adds the FOR TABLE entries of table mappings: each with the columns it reads, as presets
// do; a FULL identity, or a provider before PostgreSQL 15, has a table published whole, with
// a note.
awaitable<void> add_mapping_tables(pg::AsyncConnection& source,
                                   const std::vector<mapping::MappingRule>& mappings,
                                   PublicationEntries& out, std::vector<std::string>& notes) {
    const bool lists = co_await has_column_lists(source);
    for (const auto& m : mappings) {
        const auto table = quote_qualified(m.source_schema, m.source_table);
        auto& entry = out.entry(table);
        if (!lists) {
            entry.unfiltered = true;
            if (!entry.whole) {
                notes.push_back(
                    fmt::format("{} is published with all its columns: column lists "
                                "need PostgreSQL 15 or later on the provider",
                                table));
            }
            entry.whole = true;
            continue;
        }
        const auto published =
            co_await published_columns(source, m.source_schema, m.source_table, mapping_columns(m));
        if (published.identity.full) {
            if (!entry.whole) {
                notes.push_back(fmt::format(
                    "{} is published with all its columns: it has REPLICA IDENTITY FULL, and "
                    "PostgreSQL then needs a publication's column list to name every column; "
                    "give it its primary key as identity (REPLICA IDENTITY DEFAULT) or REPLICA "
                    "IDENTITY USING INDEX, then recreate the publication, to keep the columns "
                    "the mapping does not read on the provider",
                    table));
            }
            entry.whole = true;
        } else if (!published.columns.empty()) {
            PublicationEntries::add_columns(entry, published.columns);
        } else {
            entry.whole = true;
        }
        // A scoped mapping (fan-out) publishes its rows only, where PostgreSQL allows a filter
        // on the scope's columns; otherwise the router scopes them.
        std::vector<std::string> scope_columns;
        std::string filter;
        for (const auto& [column, value] : m.scope) {
            scope_columns.push_back(column);
            filter += (filter.empty() ? "" : " AND ") + mapping::scope_condition(column, value);
        }
        if (m.scope.empty() || !published.identity.covers(scope_columns)) {
            entry.unfiltered = true;
        } else if (std::find(entry.filters.begin(), entry.filters.end(), filter) ==
                   entry.filters.end()) {
            entry.filters.push_back(filter);
        }
    }
}

// Presets need column lists and row filters: throws when the provider predates them.
awaitable<void> require_column_lists_for_presets(pg::AsyncConnection& source,
                                                 const config::Config& config) {
    if (std::all_of(config.targets.begin(), config.targets.end(),
                    [](const auto& t) { return t.composites.empty(); })) {
        co_return;
    }
    auto v = co_await source.query(
        "SELECT current_setting('server_version_num')::int >= 150000, "
        "current_setting('server_version')");
    if (v.get(0, 0) != "t") {
        throw Error(
            fmt::format("presets need PostgreSQL 15 or later on the provider "
                        "(publication column lists and row filters); it runs {}",
                        v.get(0, 1)));
    }
}

// Adds the FOR TABLE entry of composite source `s`. Composite sources publish just the
// mirrored columns (secrets beside them stay on the provider) and, with a row filter, just the
// rows in scope. PostgreSQL refuses UPDATE and DELETE on a table whose column list lacks a
// replica identity column, or whose row filter reads a column outside it: the identity's
// columns join the list, and a filter the identity does not cover is left out (the preset's
// SQL scopes those rows), with a note.
awaitable<void> add_mirror_source_table(pg::AsyncConnection& source,
                                        const mapping::CompositeRule& composite,
                                        const mapping::MirrorSource& s, PublicationEntries& out,
                                        std::vector<std::string>& notes) {
    const auto table = quote_qualified(s.source_schema, s.source_table);
    std::vector<std::string> wanted;
    for (const auto& c : s.columns) wanted.push_back(c.name);
    const auto published =
        co_await published_columns(source, s.source_schema, s.source_table, wanted);
    const auto& identity = published.identity;
    if (identity.full) {
        throw Error(fmt::format(
            "{} has REPLICA IDENTITY FULL: PostgreSQL then needs a publication's column "
            "list to name every column, which would publish the columns the preset "
            "leaves out (secrets among them); give it its primary key as identity "
            "(REPLICA IDENTITY DEFAULT) or REPLICA IDENTITY USING INDEX",
            table));
    }
    if (published.read.empty()) {
        throw Error(
            fmt::format("{} has none of the columns preset {} reads", table, composite.preset));
    }
    auto& entry = out.entry(table);
    PublicationEntries::add_columns(entry, published.columns);
    if (s.row_filter.empty()) {
        entry.unfiltered = true;
    } else if (identity.covers(s.row_filter_columns)) {
        if (std::find(entry.filters.begin(), entry.filters.end(), s.row_filter) ==
            entry.filters.end()) {
            entry.filters.push_back(s.row_filter);
        }
    } else {
        if (!entry.unfiltered) {
            notes.push_back(fmt::format(
                "{} is published without its row filter: its replica identity does not "
                "include the filter's columns, and a filter on them would make the provider "
                "refuse UPDATE and DELETE on it; authsync scopes its rows instead (a unique "
                "index over the filter's and key columns, made the table's identity with "
                "REPLICA IDENTITY USING INDEX, then recreating the publication, keeps them "
                "on the provider)",
                table));
        }
        entry.unfiltered = true;
    }
}

}  // namespace

awaitable<std::vector<std::string>> create_publication(pg::AsyncConnection& source,
                                                       const config::Config& config) {
    std::vector<std::string> notes;
    PublicationEntries entries;
    co_await require_column_lists_for_presets(source, config);
    for (const auto& t : config.targets) {
        co_await add_mapping_tables(source, t.mappings, entries, notes);
    }
    for (const auto& t : config.targets) {
        for (const auto& composite : t.composites) {
            for (const auto& s : composite.sources) {
                co_await add_mirror_source_table(source, composite, s, entries, notes);
            }
        }
    }
    co_await source.query("CREATE PUBLICATION " + quote_identifier(config.source.publication) +
                          " FOR TABLE " + entries.sql());
    co_return notes;
}

awaitable<void> create_slot(pg::AsyncConnection& source, const std::string& slot) {
    co_await source.query_params("SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                                 pg::params(slot));
}

awaitable<void> ensure_target_schema(pg::AsyncConnection& target, const config::Config& config) {
    // CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database: skip schemas that exist,
    // so a role that only owns its schemas can run authsync.
    std::vector<std::string> schemas{"authsync"};
    for (const auto& m : config.mappings) schemas.push_back(m.target_schema);
    for (const auto& c : config.composites) {
        for (const auto& t : c.targets) schemas.push_back(t.target_schema);
    }
    std::string create_schemas;
    for (const auto& schema : schemas) {
        auto r = co_await target.query_params("SELECT to_regnamespace($1) IS NULL",
                                              pg::params(quote_identifier(schema)));
        if (r.get(0, 0) == "t" &&
            create_schemas.find(quote_identifier(schema) + ";") == std::string::npos) {
            create_schemas += "CREATE SCHEMA IF NOT EXISTS " + quote_identifier(schema) + ";\n";
        }
    }
    std::string ddl = create_schemas + state_ddl();
    std::vector<std::string> seen;
    for (const auto& m : config.mappings) {
        auto name = m.target_name();
        if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
        seen.push_back(name);
        ddl += users_sync_ddl(m.target_schema, m.target_table);
    }
    for (const auto& c : config.composites) {
        for (const auto& s : c.sources) ddl += apply::mirror_ddl(s);
        for (const auto& t : c.targets) {
            if (t.kind == mapping::TargetKind::Users) {
                ddl += users_sync_ddl(t.target_schema, t.target_table);
            } else {
                ddl += t.ddl + ";\n";
            }
        }
    }
    // One transaction, and an advisory lock so that two instances starting together do not
    // race on CREATE ... IF NOT EXISTS.
    co_await target.query("BEGIN; SELECT pg_advisory_xact_lock(hashtext('authsync:ddl'));\n" + ddl +
                          "COMMIT;");
}

awaitable<std::vector<std::string>> inspect_mirrors(pg::AsyncConnection& target,
                                                    const config::Config& config) {
    std::vector<std::string> out;
    for (const auto& composite : config.composites) {
        for (const auto& s : composite.sources) {
            auto r = co_await target.query_params(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = "
                "c.relnamespace WHERE n.nspname = 'authsync' AND c.relname = $1 AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY a.attnum",
                pg::params(s.mirror_table));
            if (r.rows() == 0) {
                out.push_back(fmt::format("mirror {} of preset {} does not exist", s.mirror_name(),
                                          composite.preset));
                continue;
            }
            std::vector<std::string> have, want;
            for (int i = 0; i < r.rows(); ++i) have.emplace_back(r.get(i, 0));
            for (const auto& c : s.columns) want.push_back(c.name);
            want.emplace_back("authsync_changed_at");
            if (have != want) {
                out.push_back(
                    fmt::format("mirror {} does not have the columns preset {} mirrors "
                                "(it was made by another version of the preset)",
                                s.mirror_name(), composite.preset));
            }
        }
    }
    co_return out;
}

awaitable<std::map<std::size_t, Checkpoint>> read_lane_checkpoints(pg::AsyncConnection& target,
                                                                   const std::string& slot) {
    auto r = co_await target.query_params(
        // (Through to_jsonb: `check` may read a checkpoint table older than the column.)
        std::string("SELECT slot, end_lsn::text, coalesce((to_jsonb(c) ->> "
                    "'covers_acknowledged')::boolean, false) FROM authsync.checkpoint AS c "
                    "WHERE ") +
            apply::kSlotCheckpointRows,
        pg::params(slot));
    std::map<std::size_t, Checkpoint> lanes;
    for (int i = 0; i < r.rows(); ++i) {
        const std::string key(r.get(i, 0));
        std::size_t lane = 0;
        if (key != slot) {
            const auto digits = key.substr(apply::checkpoint_key(slot, 1).size() - 1);
            if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
                digits.size() > 4) {
                continue;  // not a lane row of this slot (e.g. "<slot>/laneX")
            }
            lane = std::stoul(digits);
        }
        lanes[lane] = Checkpoint{Lsn::parse_or_throw(r.get(i, 1)), r.get(i, 2) == "t"};
    }
    co_return lanes;
}

awaitable<std::optional<Checkpoint>> read_checkpoint(pg::AsyncConnection& target,
                                                     const std::string& slot) {
    auto lanes = co_await read_lane_checkpoints(target, slot);
    std::optional<Checkpoint> highest;
    for (const auto& [lane, c] : lanes) {
        // 0/0: a lane that has committed nothing yet.
        if (!c.end_lsn.is_valid()) continue;
        if (!highest || c.end_lsn > highest->end_lsn) highest = c;
    }
    co_return highest;
}

awaitable<void> write_lane_rows(pg::AsyncConnection& target, const std::string& slot,
                                const std::vector<Lsn>& starts) {
    std::vector<std::string> keys;
    std::vector<std::string> positions;
    for (std::size_t lane = 1; lane < starts.size(); ++lane) {
        keys.push_back(apply::checkpoint_key(slot, lane));
        positions.push_back(starts[lane].to_string());
    }
    co_await target.query_params(
        "WITH gone AS (DELETE FROM authsync.checkpoint WHERE starts_with(slot, $1 || '/lane') "
        "AND slot <> ALL ($2::text[])) INSERT INTO authsync.checkpoint (slot, end_lsn, "
        "updated_at, covers_acknowledged) SELECT k, p::pg_lsn, now(), true FROM "
        "unnest($2::text[], $3::text[]) AS t(k, p) ON CONFLICT (slot) DO NOTHING",
        pg::params(slot, apply::text_array_literal(keys), apply::text_array_literal(positions)));
}

awaitable<void> collapse_lane_checkpoints(pg::AsyncConnection& target, const std::string& slot,
                                          Lsn lowest) {
    co_await target.query_params(
        "WITH gone AS (DELETE FROM authsync.checkpoint WHERE starts_with(slot, $1 || '/lane')) "
        "UPDATE authsync.checkpoint SET end_lsn = $2::pg_lsn, updated_at = now() WHERE slot = $1",
        pg::params(slot, lowest.to_string()));
}

awaitable<void> forget_checkpoint(pg::AsyncConnection& target, const std::string& slot) {
    co_await target.query_params(
        std::string("DELETE FROM authsync.checkpoint WHERE ") + apply::kSlotCheckpointRows,
        pg::params(slot));
}

awaitable<void> delete_lane_checkpoints(pg::AsyncConnection& target, const std::string& slot) {
    co_await target.query_params(
        "DELETE FROM authsync.checkpoint WHERE starts_with(slot, $1 || '/lane')", pg::params(slot));
}

awaitable<std::vector<Problem>> check_slot_position(pg::AsyncConnection& source,
                                                    pg::AsyncConnection& target,
                                                    const config::Config& config) {
    std::vector<Problem> problems;
    auto table = co_await target.query("SELECT to_regclass('authsync.checkpoint')");
    if (table.is_null(0, 0)) co_return problems;
    auto checkpoint = co_await read_checkpoint(target, config.source.slot);
    if (!checkpoint) co_return problems;
    auto slot = co_await find_slot(source, config.source.slot);
    if (!slot) co_return problems;
    if (auto ahead = slot_ahead_of_checkpoint(config.source.slot, *slot, *checkpoint)) {
        problems.push_back({*ahead,
                            "`authsync resync` drops and re-creates the slot and copies "
                            "every user again; `run` stops until then"});
    }
    co_return problems;
}

std::optional<std::string> slot_lost(const std::string& slot_name,
                                     const std::optional<SlotInfo>& slot,
                                     const std::optional<Checkpoint>& checkpoint) {
    if (slot && slot->wal_status == "lost") {
        return fmt::format("slot {} is lost (the provider removed WAL it still needed)", slot_name);
    }
    if (checkpoint && !slot) {
        return fmt::format(
            "slot {} does not exist on the source, but the target has a "
            "checkpoint at {}",
            slot_name, checkpoint->end_lsn.to_string());
    }
    return std::nullopt;
}

awaitable<std::optional<std::string>> table_missing_from_publication(pg::AsyncConnection& source,
                                                                     const config::Config& config) {
    std::vector<std::string> tables;
    for (const auto& t : config.targets) {
        for (const auto& m : t.mappings) tables.push_back(m.source_name());
        for (const auto& c : t.composites) {
            for (const auto& s : c.sources) tables.push_back(s.source_name());
        }
    }
    auto r = co_await source.query_params(
        "SELECT t FROM unnest($1::text[]) AS t WHERE t NOT IN (SELECT schemaname || '.' || "
        "tablename FROM pg_publication_tables WHERE pubname = $2)",
        pg::params(apply::text_array_literal(tables), config.source.publication));
    if (r.rows() == 0) co_return std::nullopt;
    co_return std::string(r.get(0, 0));
}

std::optional<std::string> slot_ahead_of_checkpoint(const std::string& slot_name,
                                                    const SlotInfo& slot,
                                                    const Checkpoint& checkpoint) {
    // A checkpoint from before this rule (no covers_acknowledged) may legitimately trail idle
    // acknowledgements; its next write records them.
    if (!checkpoint.covers_acknowledged || !slot.confirmed_flush) return std::nullopt;
    if (*slot.confirmed_flush <= checkpoint.end_lsn) return std::nullopt;
    return fmt::format(
        "slot {} has confirmed_flush_lsn {}, past the target's checkpoint {}: the changes in "
        "between are gone from the slot and missing from the target (was the target restored "
        "from a backup or branched from an earlier point in time?); run `authsync resync` to "
        "copy the users again (or set source.on_slot_lost: resync)",
        slot_name, slot.confirmed_flush->to_string(), checkpoint.end_lsn.to_string());
}

namespace {

// A scoped table mapping: a row filter on its table that does not select its scope's values
// (e.g. a publication made before this target was configured) would never stream its rows.
awaitable<void> check_mapping_filters(pg::AsyncConnection& source, const config::Config& config,
                                      std::vector<Problem>& problems) {
    const auto& pubname = config.source.publication;
    for (const auto& t : config.targets) {
        for (const auto& m : t.mappings) {
            if (m.scope.empty()) continue;
            auto pub = co_await source.query_params(
                "SELECT rowfilter FROM pg_publication_tables WHERE pubname = $1 AND schemaname = "
                "$2 AND tablename = $3",
                pg::params(pubname, m.source_schema, m.source_table));
            if (pub.rows() == 0 || pub.is_null(0, 0)) continue;  // missing: reported elsewhere
            const std::string published(pub.get(0, 0));
            for (const auto& [column, value] : m.scope) {
                // As the filter's deparsed text spells the literal.
                const auto literal = quote_literal(value);
                if (published.find(literal) != std::string::npos) continue;
                problems.push_back(
                    {fmt::format("source: publication \"{}\" filters the rows of {} without "
                                 "target {}'s scope ({}): that target's rows would never stream",
                                 pubname, m.source_name(), t.name, column),
                     fmt::format("drop publication {} and let authsync create it for every "
                                 "target, then run `authsync resync`",
                                 quote_identifier(pubname))});
                break;
            }
        }
    }
}

}  // namespace

awaitable<std::vector<Problem>> check_publication_scope(pg::AsyncConnection& source,
                                                        const config::Config& config) {
    std::vector<Problem> problems;
    co_await check_mapping_filters(source, config, problems);
    const auto& pubname = config.source.publication;
    std::vector<const mapping::CompositeRule*> composites;
    for (const auto& t : config.targets) {
        for (const auto& c : t.composites) composites.push_back(&c);
    }
    for (const auto* c : composites) {
        const auto& composite = *c;
        for (const auto& s : composite.sources) {
            const auto table = quote_qualified(s.source_schema, s.source_table);
            auto pub = co_await source.query_params(
                "SELECT rowfilter FROM pg_publication_tables WHERE pubname = $1 AND schemaname = "
                "$2 AND tablename = $3",
                pg::params(pubname, s.source_schema, s.source_table));
            if (pub.rows() == 0) {
                problems.push_back(
                    {fmt::format("source: publication \"{}\" does not include {}", pubname, table),
                     "drop the publication and let authsync create it (with the "
                     "preset's column lists and row filters)"});
                continue;
            }
            if (s.row_filter.empty()) continue;
            const auto identity = co_await replica_identity(source, s);
            if (!identity.covers(s.row_filter_columns)) continue;  // published unfiltered
            // The filter must select this scope: each looked-up value it names (e.g. the
            // tenancy) must be in the published filter, or it was made for another one.
            const std::string published = pub.is_null(0, 0) ? "" : std::string(pub.get(0, 0));
            std::string missing;
            if (published.empty()) missing = "no row filter";
            for (const auto& [name, value] : composite.values) {
                if (s.row_filter.find(quote_literal(value)) == std::string::npos) continue;
                if (missing.empty() && published.find(value) == std::string::npos) {
                    missing = fmt::format("a row filter without {} {}", name, value);
                }
            }
            if (!missing.empty()) {
                problems.push_back(
                    {fmt::format("source: publication \"{}\" has {} on {}: it publishes rows "
                                 "outside the preset's scope, or not the scope's own",
                                 pubname, missing, table),
                     fmt::format("drop publication {} and let authsync create it, then run "
                                 "`authsync resync`",
                                 quote_identifier(pubname))});
            }
        }
    }
    co_return problems;
}

namespace {

// Row-level security on, and a role it applies to: the initial copy would see no rows
// (Supabase enables it on auth.users with no policy). The stream is not filtered by it, so
// only the copy is affected.
awaitable<void> check_row_security(pg::AsyncConnection& source, const std::string& oid,
                                   const std::string& table, std::vector<Problem>& problems) {
    auto rls = co_await source.query_params(
        "SELECT c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls OR "
        "pg_has_role(c.relowner, 'USAGE')) FROM pg_class c, pg_roles r "
        "WHERE c.oid = $1::oid AND r.rolname = current_user",
        pg::params(oid));
    if (rls.rows() == 1 && rls.get(0, 0) == "t") {
        problems.push_back(
            {fmt::format("source: {} has row-level security, which hides its rows from "
                         "this role: the initial copy would find no users",
                         table),
             "ALTER ROLE <role> BYPASSRLS (as a superuser), or connect as the table's "
             "owner"});
    }
}

// The columns preset source `s` mirrors against the provider table's (`cols`: name, in the
// replica identity, SELECT privilege, type): missing, a key outside the identity, a time read
// from a column that is none, and those the role may not read.
void check_mirror_columns(const mapping::CompositeRule& composite, const mapping::MirrorSource& s,
                          const std::string& table, const pg::Result& cols,
                          std::vector<Problem>& problems) {
    std::string unreadable;
    for (const auto& c : s.columns) {
        int row = -1;
        for (int i = 0; i < cols.rows(); ++i) {
            if (cols.get(i, 0) == c.name) row = i;
        }
        if (row < 0) {
            if (!c.optional) {
                problems.push_back(
                    {fmt::format("source: column \"{}\" of {} (preset {}) does not exist", c.name,
                                 table, composite.preset),
                     "the provider's schema is older or newer than the preset expects "
                     "(docs/presets.md lists the columns it reads)"});
            }
            continue;
        }
        const bool is_key =
            std::find(s.key_columns.begin(), s.key_columns.end(), c.name) != s.key_columns.end();
        if (is_key && cols.get(row, 1) != "t") {
            problems.push_back(
                {fmt::format("source: key column \"{}\" of {} is not part of its replica "
                             "identity",
                             c.name, table),
                 "restore the table's primary key, or make a unique index over the key "
                 "its identity (REPLICA IDENTITY USING INDEX; not FULL, which a column "
                 "list cannot take)"});
        }
        // A time is cast from the column's text: only a date or time type gives one
        // (an epoch number or free text would fail at the first row).
        const auto is_time = [](std::string_view t) {
            return t.rfind("timestamp", 0) == 0 || t == "date";
        };
        if (is_time(c.type) && !is_time(cols.get(row, 3))) {
            problems.push_back(
                {fmt::format("source: column \"{}\" of {} is {}, but preset {} reads it as "
                             "a time (timestamp, timestamptz or date)",
                             c.name, table, cols.get(row, 3), composite.preset),
                 "name a date or time column in the preset_options, or map the table "
                 "with a table mapping (docs/mapping.md)"});
        }
        if (cols.get(row, 2) != "t") {
            unreadable += (unreadable.empty() ? "" : ", ") + quote_identifier(c.name);
        }
    }
    if (!unreadable.empty()) {
        problems.push_back(
            {fmt::format("source: no SELECT privilege on column(s) {} of {}", unreadable, table),
             fmt::format("GRANT SELECT ({}) ON {} TO <role>", unreadable, table)});
    }
}

// One source table of a (resolved) preset: that it exists, its rows are visible, its columns
// are there and readable, published as the preset needs, under an identity a column list takes.
awaitable<void> check_mirror_source(pg::AsyncConnection& source, const config::Config& config,
                                    const mapping::CompositeRule& composite,
                                    const mapping::MirrorSource& s, bool have_publication,
                                    std::vector<Problem>& problems) {
    const auto table = quote_qualified(s.source_schema, s.source_table);
    auto rel = co_await source.query_params(
        "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', "
        "'p')",
        pg::params(s.source_schema, s.source_table));
    if (rel.rows() == 0) {
        problems.push_back(
            {fmt::format("source: table {} of preset {} does not exist", table, composite.preset),
             "check that the dsn names the provider's database, and the "
             "provider's version (docs/presets.md)"});
        co_return;
    }
    const std::string oid(rel.get(0, 0));
    co_await check_row_security(source, oid, table, problems);
    auto cols = co_await source.query_params(
        "SELECT a.attname, COALESCE(a.attnum = ANY (i.indkey), false) OR "
        "c.relreplident = 'f', has_column_privilege(c.oid, a.attnum, 'SELECT'), "
        "format_type(a.atttypid, NULL) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "LEFT JOIN pg_index i ON i.indrelid = c.oid AND ((c.relreplident = 'd' AND "
        "i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident)) "
        "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped",
        pg::params(oid));
    check_mirror_columns(composite, s, table, cols, problems);
    if (have_publication) {
        std::vector<std::string> wanted;
        for (const auto& c : s.columns) wanted.push_back(c.name);
        co_await check_published_columns(source, config.source.publication, s.source_schema,
                                         s.source_table, wanted, problems);
    }
    const auto identity = co_await replica_identity(source, s);
    if (identity.full) {
        problems.push_back(
            {fmt::format("source: {} has REPLICA IDENTITY FULL, so a publication column "
                         "list would have to publish all its columns",
                         table),
             fmt::format("ALTER TABLE {} REPLICA IDENTITY DEFAULT (or USING INDEX)", table)});
    }
}

awaitable<void> check_composite_sources(pg::AsyncConnection& source, const config::Config& config,
                                        bool have_publication, std::vector<Problem>& problems) {
    const bool scoped =
        std::any_of(config.targets.begin(), config.targets.end(), [](const auto& t) {
            return !t.composites.empty() ||
                   std::any_of(t.mappings.begin(), t.mappings.end(),
                               [](const auto& m) { return !m.scope.empty(); });
        });
    if (!scoped) co_return;
    config::Config resolved = config;
    try {
        co_await resolve_lookups(source, resolved);
    } catch (const LookupError& e) {
        problems.push_back({std::string("source: ") + e.what(),
                            "fix preset_options, or check that the dsn names the provider's "
                            "database"});
    }
    // Every target's presets, each source table once (targets share a preset's tables).
    std::set<std::string> checked;
    for (const auto& t : resolved.targets) {
        for (const auto& composite : t.composites) {
            for (const auto& s : composite.sources) {
                if (!checked.insert(composite.preset + " " + s.source_name()).second) continue;
                co_await check_mirror_source(source, config, composite, s, have_publication,
                                             problems);
            }
        }
    }
    if (!have_publication) co_return;
    auto scope = co_await check_publication_scope(source, resolved);
    problems.insert(problems.end(), scope.begin(), scope.end());
}

// The provider's settings and the connecting role: wal_level logical, REPLICATION.
awaitable<void> check_server(pg::AsyncConnection& source, std::vector<Problem>& problems) {
    auto wal_level = co_await source.query("SHOW wal_level");
    if (wal_level.get(0, 0) != "logical") {
        problems.push_back({fmt::format("source: wal_level is '{}', logical replication needs "
                                        "'logical'",
                                        wal_level.get(0, 0)),
                            "run ALTER SYSTEM SET wal_level = logical on the provider and "
                            "restart it"});
    }
    auto role = co_await source.query(
        "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user");
    if (role.rows() == 0 || role.get(0, 0) != "t") {
        problems.push_back(
            {"source: the connecting role lacks the REPLICATION attribute",
             "ALTER ROLE <role> WITH REPLICATION (or connect as a role that has it)"});
    }
}

// The slot: when missing, that one can be created (a free slot, create_slot allowed); when
// there, that it uses pgoutput and is not lost.
awaitable<void> check_slot(pg::AsyncConnection& source, const config::Config& config,
                           std::vector<Problem>& problems) {
    auto slot = co_await find_slot(source, config.source.slot);
    if (!slot) {
        auto slots = co_await source.query(
            "SELECT (SELECT count(*) FROM pg_replication_slots), "
            "current_setting('max_replication_slots')::int");
        if (std::stol(std::string(slots.get(0, 0))) >= std::stol(std::string(slots.get(0, 1)))) {
            problems.push_back(
                {fmt::format("source: all {} replication slots are in use", slots.get(0, 1)),
                 "drop an unused slot (pg_drop_replication_slot) or raise "
                 "max_replication_slots and restart the provider"});
        }
        if (!config.source.create_slot) {
            problems.push_back(
                {fmt::format("source: replication slot \"{}\" does not exist", config.source.slot),
                 "run `authsync init`, or set source.create_slot: true"});
        }
        co_return;
    }
    if (slot->plugin != "pgoutput") {
        problems.push_back({fmt::format("source: slot \"{}\" uses plugin {}, not pgoutput",
                                        config.source.slot, slot->plugin),
                            "drop it or choose another source.slot"});
    }
    if (slot->wal_status == "lost") {
        problems.push_back(
            {fmt::format("source: slot \"{}\" is lost (its WAL was removed)", config.source.slot),
             "run `authsync resync` to rebuild the slot and copy again"});
    }
}

// The columns table mapping `m` reads against the provider table's (`cols`: name, in the
// replica identity, SELECT privilege): keys that are missing or outside the identity, fields
// that are missing, and those the role may not read.
void check_mapping_columns(const mapping::MappingRule& m, const std::string& table,
                           const pg::Result& cols, std::vector<Problem>& problems) {
    std::vector<std::string> unreadable;
    auto has_column = [&](const std::string& name, bool* in_identity) {
        for (int i = 0; i < cols.rows(); ++i) {
            if (cols.get(i, 0) == name) {
                if (in_identity) *in_identity = cols.get(i, 1) == "t";
                if (cols.get(i, 2) != "t" &&
                    std::find(unreadable.begin(), unreadable.end(), name) == unreadable.end()) {
                    unreadable.push_back(name);
                }
                return true;
            }
        }
        return false;
    };
    for (const auto& k : m.key_columns) {
        bool in_identity = false;
        if (!has_column(k, &in_identity)) {
            problems.push_back({fmt::format("source: key column \"{}\" not found in {}", k, table),
                                "fix the mapping's key"});
        } else if (!in_identity) {
            problems.push_back(
                {fmt::format("source: key column \"{}\" of {} is not part of its replica "
                             "identity, so deletes cannot name the user",
                             k, table),
                 "make it (part of) the primary key, or set REPLICA IDENTITY FULL"});
        }
    }
    for (const auto& f : m.fields) {
        if (!has_column(f.column, nullptr)) {
            problems.push_back({fmt::format("source: column \"{}\" (raw_json key \"{}\") not "
                                            "found in {}",
                                            f.column, f.json_key, table),
                                "fix the mapping's fields, or add the column"});
        }
    }
    if (unreadable.empty()) return;
    // Only the mapped columns need SELECT: secrets beside them may stay unreadable.
    std::string list, quoted;
    for (const auto& c : unreadable) {
        list += (list.empty() ? "" : ", ") + c;
        quoted += (quoted.empty() ? "" : ", ") + quote_identifier(c);
    }
    problems.push_back(
        {fmt::format("source: no SELECT privilege on column(s) {} of {}", list, table),
         fmt::format("GRANT SELECT ({}) ON {} TO <role>", quoted, table)});
}

// One table mapping's provider table: that it exists, has a replica identity, has the columns
// the mapping reads and lets the role read them, and is published with them.
awaitable<void> check_mapping_source(pg::AsyncConnection& source, const config::Config& config,
                                     const mapping::MappingRule& m, bool have_publication,
                                     std::vector<Problem>& problems) {
    auto table = quote_qualified(m.source_schema, m.source_table);
    auto rel = co_await source.query_params(
        "SELECT c.oid, c.relreplident, "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
        pg::params(m.source_schema, m.source_table));
    if (rel.rows() == 0) {
        problems.push_back({fmt::format("source: mapped table {} does not exist", table),
                            "check the mapping's source (schema.table, case-sensitive)"});
        co_return;
    }
    const std::string oid(rel.get(0, 0));
    const auto replident = rel.get(0, 1);
    const bool has_pk = rel.get(0, 2) == "t";
    if (replident == "n" || (replident == "d" && !has_pk)) {
        problems.push_back({fmt::format("source: table {} has neither a primary key nor a "
                                        "replica identity, so its updates and deletes cannot "
                                        "be replicated",
                                        table),
                            fmt::format("add a primary key, or ALTER TABLE {} REPLICA "
                                        "IDENTITY FULL (or USING INDEX a unique index)",
                                        table)});
    }
    auto cols = co_await source.query_params(
        "SELECT a.attname, "
        "COALESCE(a.attnum = ANY (i.indkey), false) OR c.relreplident = 'f', "
        "has_column_privilege(c.oid, a.attnum, 'SELECT') "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "LEFT JOIN pg_index i ON i.indrelid = c.oid AND "
        "  ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND "
        "i.indisreplident)) "
        "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped",
        pg::params(oid));
    check_mapping_columns(m, table, cols, problems);
    if (!have_publication) co_return;
    auto pub = co_await source.query_params(
        "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND "
        "tablename = $3",
        pg::params(config.source.publication, m.source_schema, m.source_table));
    if (pub.rows() == 0) {
        problems.push_back({fmt::format("source: publication \"{}\" does not include {}",
                                        config.source.publication, table),
                            fmt::format("ALTER PUBLICATION {} ADD TABLE {}",
                                        quote_identifier(config.source.publication), table)});
    }
    co_await check_published_columns(source, config.source.publication, m.source_schema,
                                     m.source_table, mapping_columns(m), problems);
}

}  // namespace

awaitable<std::vector<Problem>> check_source(pg::AsyncConnection& source,
                                             const config::Config& config) {
    std::vector<Problem> problems;
    co_await check_server(source, problems);
    co_await check_slot(source, config, problems);
    const bool have_publication = co_await publication_exists(source, config.source.publication);
    if (!have_publication && !config.source.create_publication) {
        problems.push_back(
            {fmt::format("source: publication \"{}\" does not exist", config.source.publication),
             "run `authsync init`, or set source.create_publication: true"});
    }
    // Every target's tables (fan-out), each as that target's config sees them.
    for (std::size_t i = 0; i < config.targets.size(); ++i) {
        const auto view = config.for_target(i);
        for (const auto& m : view.mappings) {
            co_await check_mapping_source(source, view, m, have_publication, problems);
        }
        co_await check_composite_sources(source, view, have_publication, problems);
    }
    if (config.targets.empty()) {
        for (const auto& m : config.mappings) {
            co_await check_mapping_source(source, config, m, have_publication, problems);
        }
        co_await check_composite_sources(source, config, have_publication, problems);
    }
    co_return problems;
}

awaitable<std::vector<Problem>> check_target(pg::AsyncConnection& target,
                                             const config::Config& config) {
    std::vector<Problem> problems;
    auto db = co_await target.query("SELECT has_database_privilege(current_database(), 'CREATE')");
    const bool can_create = db.get(0, 0) == "t";
    std::vector<std::pair<std::string, std::string>> tables;
    tables.emplace_back("authsync", "checkpoint");
    for (const auto& m : config.mappings) tables.emplace_back(m.target_schema, m.target_table);
    for (const auto& c : config.composites) {
        for (const auto& t : c.targets) tables.emplace_back(t.target_schema, t.target_table);
    }
    for (const auto& [schema, table] : tables) {
        auto name = quote_qualified(schema, table);
        auto r = co_await target.query_params(
            "SELECT has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2",
            pg::params(schema, table));
        if (r.rows() == 0) {
            // Missing tables are created at start: in an existing schema that needs CREATE on
            // the schema, else CREATE on the database.
            auto sp = co_await target.query_params(
                "SELECT has_schema_privilege(n.oid, 'CREATE') FROM pg_namespace n "
                "WHERE n.nspname = $1",
                pg::params(schema));
            const bool schema_exists = sp.rows() == 1;
            const bool may_create = schema_exists ? sp.get(0, 0) == "t" : can_create;
            if (!may_create) {
                // (No conditional expression over strings here: GCC 12 coroutines.)
                std::string hint =
                    "GRANT CREATE ON DATABASE <db> TO <role>, or create the schema "
                    "for the role (CREATE SCHEMA ... AUTHORIZATION)";
                if (schema_exists) {
                    hint = fmt::format(
                        "GRANT CREATE ON SCHEMA {} TO <role>, or run `authsync "
                        "init` as a role that may",
                        quote_identifier(schema));
                }
                problems.push_back(
                    {fmt::format("target: {} does not exist and the role may not create it", name),
                     hint});
            }
        } else if (r.get(0, 0) != "t") {
            problems.push_back(
                {fmt::format("target: missing SELECT/INSERT/UPDATE/DELETE on {}", name),
                 fmt::format("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO <role>", name)});
        }
    }
    co_return problems;
}

asio::awaitable<void> ensure_publication(pg::AsyncConnection& source,
                                         const config::Config& config) {
    const auto& src = config.source;
    if (!co_await publication_exists(source, src.publication)) {
        if (!src.create_publication) {
            throw FatalError(
                fmt::format("publication \"{}\" does not exist on the source (run "
                            "`authsync init`, or set source.create_publication)",
                            src.publication));
        }
        auto notes = co_await create_publication(source, config);
        logger("engine")->info("created publication {}", src.publication);
        for (const auto& note : notes) logger("engine")->warn("{}", note);
    }
    // E.g. a publication made for another project, or before a target was added, would stream
    // the wrong users or none of a target's.
    auto problems = co_await check_publication_scope(source, config);
    if (!problems.empty()) {
        throw FatalError(fmt::format("{} ({})", problems.front().what, problems.front().hint));
    }
    // A mapped table left out of an existing publication would never stream: say so now.
    if (auto missing = co_await table_missing_from_publication(source, config)) {
        throw FatalError(fmt::format(
            "publication \"{}\" does not include {} (mapped in the config): its changes would "
            "never arrive; add it with ALTER PUBLICATION, or drop the publication so that "
            "authsync creates it for the config's tables",
            src.publication, *missing));
    }
}

}  // namespace authsync::engine
