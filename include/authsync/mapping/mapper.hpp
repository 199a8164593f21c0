// Mapper: decoded pgoutput tuples of one provider table -> users_sync row images.
//
// A BoundMapping is a MappingRule bound to the columns of the relation as the stream last
// described it (positions and type OIDs); rebind whenever a new Relation message arrives.
// Values are turned into JSON by source type (see Conversion). A column sent as unchanged
// TOAST ('u') is left out of the image and the image is marked partial: the writer then keeps
// the value already stored in raw_json for that key (never NULL). Pure: no I/O.
//
// Conversion by type, Auto (text output form, session TimeZone=UTC, DateStyle=ISO):
//   bool                     t/f -> true/false
//   int2/int4/int8/oid       the digits as a JSON number
//   numeric/float4/float8    the number as written (normalised where JSON is stricter, e.g. a
//                            leading '+' or '.'); NaN, Infinity, -Infinity -> JSON strings
//   json/jsonb               embedded as sent (PostgreSQL has validated it)
//   timestamptz/timestamp    "2024-01-02T03:04:05Z" in UTC, with ".ffffff" only when the
//                            microseconds are not zero; BC years are astronomical (1 BC is
//                            0000, 44 BC is -43) and years outside 0000-9999 take ECMAScript's
//                            extended form, "-000043-03-15", "+010000-01-01";
//                            infinity -> "infinity", -infinity -> "-infinity"
//   date                     "2024-01-02" (same year rules)
//   anything else            the text as a JSON string
// EpochMillis: timestamps and dates -> integer milliseconds since 1970-01-01 UTC, rounded
// toward negative infinity; integers pass through; numeric passes through rounded toward
// negative infinity (users_sync casts it to bigint); any other type is rejected by bind.
// JSON strings escape '"', backslash and control characters and keep valid UTF-8 as it is;
// invalid UTF-8 (which a UTF8 database never sends) becomes U+FFFD per maximal ill-formed
// subsequence, so the output is always valid JSON.
// Error messages name the relation, column, json key and type, never a row's value (PII).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "authsync/mapping/rule.hpp"
#include "authsync/pgoutput/messages.hpp"

namespace authsync::mapping {

// A users_sync row as JSON fragments: each value is already valid JSON text (`"x"`, `42`,
// `{"a":1}`, `null`), so numerics and json columns are embedded exactly, without a round trip
// through double.
//
// The fields are written into one JSON object as they are added (one buffer per image, not a
// string per key and value): the image is made for every change applied, so this is on the
// hot path. Field order is the order of adding; a key is never added twice.
class RowImage {
public:
    std::string key;       // users_sync.id
    bool partial = false;  // some mapped column was unchanged TOAST and is absent

    // Adds `json_key` (escaped here) with `value`, which is JSON text (not a view into this
    // image: adding may move its buffer).
    void add(std::string_view json_key, std::string_view value);
    // The same with `quoted_key` already a JSON string literal, escaped (`"name"`).
    void add_quoted(std::string_view quoted_key, std::string_view value);
    // Adds a field whose key is `quoted_key` (as for add_quoted) and returns the buffer for the
    // caller to append the value's JSON text to; end_value() closes it. Nothing else may touch the
    // image in between.
    std::string& begin_value(std::string_view quoted_key);
    void end_value();

    void reserve(std::size_t json_bytes) { json_.reserve(json_bytes); }
    std::size_t field_count() const { return fields_.size(); }
    // The value's JSON text for `json_key`, or nullopt when the image has no such key.
    std::optional<std::string_view> value_of(std::string_view json_key) const;

    // Later values win; the result is partial only if both were. (A partial image merged over
    // a full one is full: the older one supplies the unchanged values.)
    void merge_from(const RowImage& newer);
    // `{"id":"1","display_name":"Ada",...}` in field order.
    std::string to_json() const { return json_.empty() ? std::string("{}") : json_; }
    // What the image weighs in memory, roughly.
    std::size_t bytes() const { return key.size() + json_.size() + 32 * fields_.size() + 64; }

private:
    struct Field {
        std::uint32_t key_begin;    // the quoted key's first byte in json_
        std::uint32_t value_begin;  // after its ':'
        std::uint32_t value_end;
    };
    std::string_view quoted_key(const Field& f) const {
        return std::string_view(json_).substr(f.key_begin, f.value_begin - 1 - f.key_begin);
    }
    std::string_view value(const Field& f) const {
        return std::string_view(json_).substr(f.value_begin, f.value_end - f.value_begin);
    }
    const Field* find(std::string_view quoted) const;

    std::string json_;  // "{...}" once a field is added; empty before
    std::vector<Field> fields_;
};

class BoundMapping {
public:
    // Throws MappingError naming the relation and column when a key or field column is absent,
    // when the relation is not the rule's source table, when a json key repeats, when a field
    // "id" is not the single key column, or when EpochMillis is asked of a type it cannot apply
    // to. The rule is copied: the BoundMapping does not refer to the caller's object.
    static BoundMapping bind(const MappingRule& rule, const pgoutput::Relation& relation);

    const MappingRule& rule() const { return rule_; }

    // The image of a new tuple (Insert, or Update's new tuple). `old_tuple` (Update's 'K'/'O'
    // tuple, may be null) supplies key columns that the new tuple sent as unchanged TOAST.
    // Tuples are in text format (authsync does not ask pgoutput for binary).
    RowImage map_new(const pgoutput::TupleData& tuple, const pgoutput::TupleData* old_tuple) const;
    // The key of an old tuple (Delete, or Update's 'K'/'O' tuple). Throws MappingError when a
    // key column is null there (it is not part of the replica identity).
    std::string key_of_old(const pgoutput::TupleData& old_tuple) const;

private:
    struct BoundField {
        std::string json_key;
        std::string quoted_key;  // json_key as a JSON string literal
        int column = -1;         // position in the relation
        pgoutput::TypeId type_id = 0;
        Conversion as = Conversion::Auto;
        bool is_key = false;  // the column is a key column
    };

    void check_width(const pgoutput::TupleData& tuple, const char* which) const;
    // The key column at key_positions_[i] of a new tuple, from the old tuple when unchanged TOAST.
    const pgoutput::TupleColumn& new_key_column(std::size_t i, const pgoutput::TupleData& tuple,
                                                const pgoutput::TupleData* old_tuple) const;
    void append_field(std::string& out, std::size_t i, std::string_view text) const;

    MappingRule rule_;
    std::string relation_name_;
    std::size_t column_count_ = 0;
    std::vector<int> key_positions_;
    std::vector<BoundField> fields_;
    bool has_id_field_ = false;
};

// Converts one column value (text output form) of the given type to JSON text. Exposed for
// tests and for the backfill's COPY path. Throws MappingError on a value that cannot convert.
std::string column_to_json(std::string_view text, pgoutput::TypeId type_id, Conversion as);
// JSON string literal with escapes.
std::string json_quote(std::string_view text);
// Appends part `index` of a multi-column key to `key`: parts joined with ':', a ':' or '\'
// inside a part escaped with '\' (unambiguous; a part with neither reads as it is).
void append_key_part(std::string& key, std::size_t index, std::string_view part);

}  // namespace authsync::mapping
