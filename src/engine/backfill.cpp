#include "authsync/engine/backfill.hpp"
#include "authsync/engine/log.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "authsync/apply/batch.hpp"
#include "authsync/apply/composite.hpp"
#include "authsync/copy/text_format.hpp"
#include "authsync/core/hex.hpp"
#include "authsync/core/sql.hpp"
#include "authsync/engine/provisioning.hpp"
#include "authsync/mapping/mapper.hpp"

namespace authsync::engine {

using asio::awaitable;

namespace {

// Rows are sent to the target in pieces of about this many bytes.
constexpr std::size_t kCopyChunkBytes = 256 * 1024;

// The columns the mapping reads (key and fields, nothing else: the provider's other columns
// may be secrets the role cannot and should not read), described as pgoutput would, in attnum
// order, so that the stream's mapper applies unchanged.
awaitable<pgoutput::Relation> describe(pg::AsyncConnection& source,
                                       const mapping::MappingRule& rule) {
    std::vector<const std::string*> wanted;
    for (const auto& k : rule.key_columns) wanted.push_back(&k);
    for (const auto& f : rule.fields) wanted.push_back(&f.column);
    auto r = co_await source.query_params(
        "SELECT a.attname, a.atttypid, a.atttypmod, c.oid "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attgenerated = '' AND a.attname = ANY ($3::text[]) ORDER BY a.attnum",
        pg::params(rule.source_schema, rule.source_table, apply::text_array_literal(wanted)));
    if (r.rows() == 0) {
        throw MappingError(
            fmt::format("mapping {}: table not found on the source", rule.source_name()));
    }
    pgoutput::Relation rel;
    rel.relation_id = static_cast<pgoutput::RelationId>(std::stoul(std::string(r.get(0, 3))));
    rel.namespace_name = rule.source_schema;
    rel.relation_name = rule.source_table;
    for (int i = 0; i < r.rows(); ++i) {
        pgoutput::RelationColumn col;
        col.name = std::string(r.get(i, 0));
        col.type_id = static_cast<pgoutput::TypeId>(std::stoul(std::string(r.get(i, 1))));
        col.type_modifier = std::stoi(std::string(r.get(i, 2)));
        rel.columns.push_back(std::move(col));
    }
    co_return rel;
}

// Moves the rows of a started COPY ... TO STDOUT on `source` into a started COPY ... FROM STDIN
// on `target`, each through `convert(row, out)`, and ends the copy in; returns the rows moved.
// Reading the provider and writing the target interleave on one loop: both servers work at
// once while authsync converts in between.
template <typename Convert>
awaitable<std::uint64_t> pump_copy(pg::AsyncConnection& source, pg::AsyncConnection& target,
                                   Convert convert) {
    std::uint64_t rows = 0;
    std::string out;
    out.reserve(kCopyChunkBytes + 4096);
    for (;;) {
        auto row = co_await source.read_copy_data();
        if (!row) break;
        auto bytes = row->bytes();
        convert(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), out);
        ++rows;
        if (out.size() >= kCopyChunkBytes) {
            co_await target.write_copy_data(authsync::as_bytes(out));
            out.clear();
        }
    }
    if (!out.empty()) co_await target.write_copy_data(authsync::as_bytes(out));
    co_await target.end_copy();
    co_return rows;
}

// The planner's row estimate: pg_class.reltuples after ANALYZE, or, for a table never
// analyzed, what the planner derives from its size.
awaitable<std::optional<std::uint64_t>> estimate_rows(pg::AsyncConnection& source,
                                                      const mapping::MappingRule& rule) {
    auto r = co_await source.query("EXPLAIN (FORMAT JSON) SELECT 1 FROM " +
                                   quote_qualified(rule.source_schema, rule.source_table));
    const std::string plan(r.get(0, 0));
    const auto key = plan.find("\"Plan Rows\": ");
    if (key == std::string::npos) co_return std::nullopt;
    co_return std::stoull(plan.substr(key + 13));
}

// Opens the snapshot's transaction on the provider and, on the target, the transaction that
// holds the whole copy with its staging tables; returns the snapshot's time.
awaitable<std::string> begin_copy(pg::AsyncConnection& source, pg::AsyncConnection& target,
                                  const std::string& snapshot_name) {
    co_await source.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    co_await source.query("SET TRANSACTION SNAPSHOT " + quote_literal(snapshot_name));
    // The text form the copy is read in (and mirrors are loaded from) must not depend on the
    // provider's settings: e.g. DateStyle SQL, DMY would swap days and months.
    // (As the replication connection has them: see pg/async_connection.cpp.)
    co_await source.query(
        "SET LOCAL DateStyle = ISO, MDY; SET LOCAL IntervalStyle = iso_8601; "
        "SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 3; "
        "SET LOCAL bytea_output = hex");
    co_await target.query("BEGIN");
    co_await target.query(
        "CREATE TEMP TABLE authsync_stage (raw_json jsonb) ON COMMIT DROP;"
        "CREATE TEMP TABLE authsync_seen (target text, id text) ON COMMIT DROP");
    // The snapshot's time stands in for a commit time: rows copied were current then.
    auto now = co_await source.query("SELECT now()");
    co_return std::string(now.get(0, 0));
}

// The columns of `rel`, quoted, for a SELECT list.
std::string select_list(const pgoutput::Relation& rel) {
    std::string columns;
    for (const auto& c : rel.columns) {
        if (!columns.empty()) columns += ", ";
        columns += quote_identifier(c.name);
    }
    return columns;
}

// Whether `rule` is the only table mapping that fills its target table.
bool sole_mapping_of_target(const config::Config& config, const mapping::MappingRule& rule) {
    const auto sharing =
        std::count_if(config.mappings.begin(), config.mappings.end(),
                      [&](const auto& m) { return m.target_name() == rule.target_name(); });
    return sharing == 1;
}

// Upserts the staged rows of `rule` into its target and remembers their ids as seen.
awaitable<void> merge_stage(pg::AsyncConnection& target, const mapping::MappingRule& rule,
                            const std::string& table, const std::string& snapshot_time) {
    co_await target.query_params(
        apply::users_sync_upsert(table,
                                 "SELECT raw_json, $1::timestamptz, NULL FROM authsync_stage"),
        pg::params(snapshot_time));
    co_await target.query_params(
        "INSERT INTO authsync_seen SELECT $1, raw_json->>'id' FROM authsync_stage",
        pg::params(rule.target_name()));
}

// Copies the rows of one table mapping into its target, adding them to `total`. Returns whether
// they went through the stage, so that the target needs reconciling.
awaitable<bool> copy_mapping(pg::AsyncConnection& source, pg::AsyncConnection& target,
                             const config::Config& config, const mapping::MappingRule& rule,
                             const std::string& snapshot_time, EngineStatus& status,
                             std::uint64_t& total, spdlog::logger& log) {
    const auto name = rule.source_name();
    const auto rel = co_await describe(source, rule);
    const auto bound = mapping::BoundMapping::bind(rule, rel);
    auto& progress = status.snapshot_progress[name];
    progress.estimated = co_await estimate_rows(source, rule);

    const std::string columns = select_list(rel);
    const auto table = quote_qualified(rule.target_schema, rule.target_table);
    // An empty target that only this mapping fills takes the rows directly: no staging,
    // no upsert, nothing to reconcile. Otherwise stage, upsert, and remember what was seen.
    const bool sole = sole_mapping_of_target(config, rule);
    auto empty = co_await target.query("SELECT NOT EXISTS (SELECT 1 FROM " + table + ")");
    const bool direct = sole && empty.get(0, 0) == "t";
    std::string row_suffix;
    if (direct) {
        row_suffix = "\t" + snapshot_time + "\n";
        co_await target.start_copy_in("COPY " + table + " (raw_json, updated_at) FROM STDIN");
    } else {
        row_suffix = "\n";
        co_await target.query("TRUNCATE authsync_stage");
        co_await target.start_copy_in("COPY authsync_stage (raw_json) FROM STDIN");
    }
    // A scoped mapping (fan-out) copies its own rows only.
    std::string where;
    for (const auto& [column, value] : rule.scope) {
        where += (where.empty() ? " WHERE " : " AND ") + mapping::scope_condition(column, value);
    }
    co_await source.start_copy_out("COPY (SELECT " + columns + " FROM " +
                                   quote_qualified(rule.source_schema, rule.source_table) + where +
                                   ") TO STDOUT");
    pgoutput::TupleData tuple;
    progress.copied +=
        co_await pump_copy(source, target, [&](std::string_view row, std::string& out) {
            copy::parse_text_row(row, rel.columns.size(), tuple);
            copy::append_text_field(out, bound.map_new(tuple, nullptr).to_json());
            out += row_suffix;
        });

    total += progress.copied;
    log.info("copied {} rows of {} into {}{}", progress.copied, name, rule.target_name(),
             direct ? " (empty target: loaded directly)" : "");
    if (direct) co_return false;
    co_await merge_stage(target, rule, table, snapshot_time);
    co_return true;
}

// Users the copy did not see are gone from the provider: soft-deletes (or removes) the rows of
// each staged target that are not in authsync_seen.
awaitable<void> reconcile_unseen(pg::AsyncConnection& target, const config::Config& config,
                                 std::set<std::string>& targets, const std::string& snapshot_time,
                                 spdlog::logger& log) {
    for (const auto& rule : config.mappings) {
        if (targets.erase(rule.target_name()) == 0) continue;
        const auto table = quote_qualified(rule.target_schema, rule.target_table);
        const std::string unseen =
            "NOT EXISTS (SELECT 1 FROM authsync_seen s WHERE s.target = $1 AND s.id = t.id)";
        pg::Result r;
        if (rule.on_delete == mapping::OnDelete::Hard) {
            r = co_await target.query_params("DELETE FROM " + table + " AS t WHERE " + unseen,
                                             pg::params(rule.target_name()));
        } else {
            r = co_await target.query_params("UPDATE " + table +
                                                 " AS t SET deleted_at = $2::timestamptz WHERE "
                                                 "t.deleted_at IS NULL AND " +
                                                 unseen,
                                             pg::params(rule.target_name(), snapshot_time));
        }
        log.info("reconciled {}: {} users no longer on the provider", rule.target_name(),
                 r.affected_rows());
    }
}

// The columns of `s` that the publication sends (`published`, one name a row), quoted, in the
// preset's order.
std::string published_mirror_columns(const mapping::MirrorSource& s, const pg::Result& published) {
    std::string list;
    for (const auto& c : s.columns) {
        for (int i = 0; i < published.rows(); ++i) {
            if (published.get(i, 0) != c.name) continue;
            list += (list.empty() ? "" : ", ") + quote_identifier(c.name);
        }
    }
    return list;
}

// Copies one composite source as it is into its mirror (the provider's text format is the
// mirror's), made anew, adding the rows to `total`.
awaitable<void> copy_mirror(pg::AsyncConnection& source, pg::AsyncConnection& target,
                            const config::Config& config, const mapping::CompositeRule& composite,
                            const mapping::MirrorSource& s, EngineStatus& status,
                            std::uint64_t& total, spdlog::logger& log) {
    const auto name = s.source_name();
    auto& progress = status.snapshot_progress[name];
    // The columns the stream will carry: those of the publication's column list (an optional
    // column added on the provider later is not in it, and must not be copied only to be
    // overwritten with NULL by the first update).
    auto published = co_await source.query_params(
        "SELECT unnest(attnames) FROM pg_publication_tables WHERE pubname = $1 AND "
        "schemaname = $2 AND tablename = $3",
        pg::params(config.source.publication, s.source_schema, s.source_table));
    const std::string list = published_mirror_columns(s, published);
    if (list.empty()) {
        throw Error(
            fmt::format("publication \"{}\" publishes none of the columns of "
                        "{} that preset {} mirrors",
                        config.source.publication, name, composite.preset));
    }
    const auto mirror = quote_qualified("authsync", s.mirror_table);
    // Made anew: it may be missing, or shaped by another version of the preset.
    co_await target.query("DROP TABLE IF EXISTS " + mirror + ";\n" + apply::mirror_ddl(s));
    co_await target.start_copy_in("COPY " + mirror + " (" + list + ") FROM STDIN");
    std::string select =
        "SELECT " + list + " FROM " + quote_qualified(s.source_schema, s.source_table);
    if (!s.row_filter.empty()) select += " WHERE " + s.row_filter;
    co_await source.start_copy_out("COPY (" + select + ") TO STDOUT");
    progress.copied += co_await pump_copy(
        source, target, [](std::string_view row, std::string& out) { out += row; });
    co_await target.query("ANALYZE " + mirror);
    total += progress.copied;
    log.info("copied {} rows of {} into its mirror {}", progress.copied, name, s.mirror_name());
}

// Composite mappings: each mirror is copied, the preset's scope recorded, then every target
// row is recomputed from the mirrors.
awaitable<void> copy_composites(pg::AsyncConnection& source, pg::AsyncConnection& target,
                                const config::Config& config, EngineStatus& status,
                                std::uint64_t& total, spdlog::logger& log) {
    if (config.composites.empty()) co_return;
    auto micros = co_await source.query("SELECT (extract(epoch FROM now()) * 1000000)::int8");
    const std::string snapshot_micros(micros.get(0, 0));
    for (const auto& composite : config.composites) {
        for (const auto& s : composite.sources) {
            co_await copy_mirror(source, target, config, composite, s, status, total, log);
        }
        co_await target.query_params(
            "INSERT INTO authsync.preset_scope (slot, preset, scope) VALUES ($1, $2, $3) "
            "ON CONFLICT (slot, preset) DO UPDATE SET scope = EXCLUDED.scope, copied_at = now()",
            pg::params(config.source.slot, composite.preset, composite.scope()));
        for (const auto& t : composite.targets) {
            co_await target.query_params(apply::recompute_all_sql(t), pg::params(snapshot_micros));
            log.info("computed {} from the mirrors of preset {}", t.target_name(),
                     composite.preset);
        }
    }
}

}  // namespace

awaitable<void> record_mapping_scopes(pg::AsyncConnection& target, const config::Config& config) {
    for (const auto& m : config.mappings) {
        co_await target.query_params(
            "INSERT INTO authsync.preset_scope (slot, preset, scope) VALUES ($1, $2, $3) "
            "ON CONFLICT (slot, preset) DO UPDATE SET scope = EXCLUDED.scope, copied_at = now()",
            pg::params(config.source.slot, m.scope_record(), m.scope_text()));
    }
}

awaitable<void> run_backfill(pg::AsyncConnection& source, pg::AsyncConnection& target,
                             const config::Config& config, const std::string& snapshot_name,
                             Lsn consistent_point, EngineStatus& status) {
    auto log = logger("engine");
    const auto started = std::chrono::steady_clock::now();
    status.snapshot_progress.clear();

    const std::string snapshot_time = co_await begin_copy(source, target, snapshot_name);
    std::uint64_t total = 0;
    std::set<std::string> targets;
    for (const auto& rule : config.mappings) {
        const bool staged =
            co_await copy_mapping(source, target, config, rule, snapshot_time, status, total, *log);
        if (staged) targets.insert(rule.target_name());
    }
    co_await reconcile_unseen(target, config, targets, snapshot_time, *log);
    co_await record_mapping_scopes(target, config);
    co_await copy_composites(source, target, config, status, total, *log);

    auto st = apply::checkpoint_statement(config.source.slot, consistent_point, PgTimestamp::now());
    co_await target.query_params(st.sql, st.params);
    co_await target.query("COMMIT");
    co_await source.query("COMMIT");
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    log->info("initial copy done: {} rows in {:.1f} s ({:.0f} rows/s), streaming from {}", total,
              seconds, seconds > 0 ? static_cast<double>(total) / seconds : 0.0,
              consistent_point.to_string());
}

}  // namespace authsync::engine
