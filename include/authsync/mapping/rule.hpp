// MappingRule: what the user configured for one provider table (see conf/ and docs/mapping.md).
//
// Plain data, produced by the config module and consumed by the mapper. Pure.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace authsync::mapping {

// How a source column's value becomes a JSON value in raw_json.
enum class Conversion {
    Auto,         // by source type: bool, number, embedded json, ISO-8601 UTC timestamp, string
    EpochMillis,  // timestamp / timestamptz / date -> integer milliseconds since 1970 (UTC);
                  // integer columns pass through as numbers
    Text,         // always the column's text as a JSON string
};

enum class OnDelete { Soft, Hard };

struct FieldRule {
    std::string json_key;  // key in raw_json
    std::string column;    // source column name
    Conversion as = Conversion::Auto;
};

struct MappingRule {
    std::string source_schema = "public";
    std::string source_table;
    std::string target_schema = "neon_auth";
    std::string target_table = "users_sync";
    // Source column(s) whose text value becomes users_sync.id (several are joined with ':').
    std::vector<std::string> key_columns;
    // In order; raw_json always also gets "id" = the key, unless a field named "id" is given.
    std::vector<FieldRule> fields;
    OnDelete on_delete = OnDelete::Soft;
    // Which rows are this target's (fan-out: tenants of one provider table in their own
    // targets): column -> the text value a row must have, all of them; empty: every row.
    // Published as a row filter where the replica identity allows, and applied by the router.
    std::vector<std::pair<std::string, std::string>> scope;

    std::string source_name() const { return source_schema + "." + source_table; }
    std::string target_name() const { return target_schema + "." + target_table; }
    // What the target's rows were copied for, recorded beside them (authsync.preset_scope):
    // "" for every row, else "column=value" terms joined with "; ".
    std::string scope_text() const;
    // The key of that record: the mapping's source and target tables.
    std::string scope_record() const { return "mapping " + source_name() + " " + target_name(); }
};

// The SQL condition selecting rows whose `column` is `value`: for the copy and the
// publication's row filter. The literal takes the column's type (a cast to text would be a
// function call, which a row filter refuses on types whose output function is not immutable).
std::string scope_condition(const std::string& column, const std::string& value);

}  // namespace authsync::mapping
