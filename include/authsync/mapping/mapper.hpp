// Mapper: decoded pgoutput tuples of one provider table -> users_sync row images.
//
// A BoundMapping is a MappingRule bound to the columns of the relation as the stream last
// described it (positions and type OIDs); rebind whenever a new Relation message arrives.
// Values are turned into JSON by source type (see Conversion). A column sent as unchanged
// TOAST ('u') is left out of the image and the image is marked partial: the writer then keeps
// the value already stored in raw_json for that key (never NULL). Pure: no I/O.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "authsync/mapping/rule.hpp"
#include "authsync/pgoutput/messages.hpp"

namespace authsync::mapping {

// A users_sync row as JSON fragments: each value is already valid JSON text (`"x"`, `42`,
// `{"a":1}`, `null`), so numerics and json columns are embedded exactly, without a round trip
// through double.
struct RowImage {
    std::string key;                                          // users_sync.id
    std::vector<std::pair<std::string, std::string>> fields;  // raw_json key -> JSON text
    bool partial = false;  // some mapped column was unchanged TOAST and is absent

    // Later values win; the result is partial only if both were. (A partial image merged over
    // a full one is full: the older one supplies the unchanged values.)
    void merge_from(const RowImage& newer);
    // `{"id":"1","display_name":"Ada",...}` in field order.
    std::string to_json() const;
};

class BoundMapping {
public:
    // Throws MappingError naming the relation and column when a key or field column is absent.
    static BoundMapping bind(const MappingRule& rule, const pgoutput::Relation& relation);

    const MappingRule& rule() const { return *rule_; }

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
        int column = -1;  // position in the relation
        pgoutput::TypeId type_id = 0;
        Conversion as = Conversion::Auto;
    };
    const MappingRule* rule_ = nullptr;
    std::string relation_name_;
    std::vector<int> key_positions_;
    std::vector<BoundField> fields_;
    bool has_id_field_ = false;
};

// Converts one column value (text output form) of the given type to JSON text. Exposed for
// tests and for the backfill's COPY path. Throws MappingError on a value that cannot convert.
std::string column_to_json(std::string_view text, pgoutput::TypeId type_id, Conversion as);
// JSON string literal with escapes.
std::string json_quote(std::string_view text);

}  // namespace authsync::mapping
