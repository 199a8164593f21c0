// ChangeRouter: decoded changes -> operations for writers (apply lanes).
//
// It binds each Relation message to the mapping rule or composite mirror that reads that
// table (a re-sent Relation replaces the binding), turns Insert, Update, Delete and Truncate
// into operations on the bound destination, and decides which lane applies each: the lane of
// the target key (lanes.hpp), so that all changes to one key go to one writer in order. Table
// mappings and preset mirrors go through the same code; a mirror is routed by key only when
// its preset has one source whose changes affect exactly the target row of the mirror's key
// (e.g. supabase); any other preset's changes all go to lane 0, because which target rows they
// affect is known only in the target. A TRUNCATE of a routed table goes to every lane, each
// for the rows it owns. With fan-out there is one router per target: a table mapping or mirror
// with a scope (the target's tenant) passes on only the rows in it (Destination::scope).
// Pure: no I/O. Operations refer to bindings held here: consume them
// before the next Relation message.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "authsync/mapping/composite.hpp"
#include "authsync/mapping/mapper.hpp"
#include "authsync/pgoutput/messages.hpp"
#include "authsync/pgoutput/relation_cache.hpp"
#include "authsync/pipeline/flush_tracker.hpp"

namespace authsync::pipeline {

// One condition of a scope: the relation's column `column` has the text `value`.
struct ScopeTerm {
    std::size_t column = 0;
    bool in_key = false;  // part of the replica identity: an old key tuple carries it
    std::string value;
};

// Where a bound table's changes go: a users_sync mapping or a composite preset's mirror.
struct Destination {
    const mapping::BoundMapping* mapping = nullptr;
    const mapping::BoundMirror* mirror = nullptr;
    bool routed = false;      // by key over the lanes (else lane 0)
    std::string source_name;  // the provider table, for counting and messages
    // The target's rows: every term holds (empty: every row). A new tuple in it is applied;
    // one outside it is not, and removes its key in case it was in it before (moved out),
    // unless the old tuple shows it was not. A removal whose old tuple lacks a scope column
    // (not in the replica identity) goes to every target: deleting an absent key is nothing.
    std::vector<ScopeTerm> scope;
};

struct Upsert {
    mapping::RowImage image;  // mapping
    mapping::MirrorRow row;   // mirror
};
struct Remove {
    std::string key;                      // mapping
    std::vector<std::string> mirror_key;  // mirror
};
// Every row lane `lane` owns (lane_condition over the lane count; all rows with one lane).
struct Truncate {
    std::size_t lane = 0;
    std::size_t lanes = 1;
};

struct Operation {
    WriterId writer = 0;
    const Destination* destination = nullptr;
    std::variant<Upsert, Remove, Truncate> change;
};

class ChangeRouter {
public:
    // `mappings` and `composites` must outlive the router.
    ChangeRouter(const std::vector<mapping::MappingRule>& mappings,
                 const std::vector<mapping::CompositeRule>& composites, std::size_t lanes);

    std::size_t lanes() const { return lanes_; }

    // A Relation message (already applied to the cache): binds it, replacing an older binding.
    void bind(const pgoutput::Relation& relation);
    // The operations for an Insert, Update, Delete or Truncate (appended to `out`); a table
    // nothing reads gives none. Tuples are checked against the cached relation first. Throws
    // ProtocolError for another message kind or an unknown relation, MappingError for a row
    // the binding cannot map.
    void route(const pgoutput::Message& message, const pgoutput::RelationCache& relations,
               std::vector<Operation>& out) const;

    // Whether a composite's mirrors can be routed by key (see above).
    static bool routable(const mapping::CompositeRule& composite);

private:
    const Destination* destination_for(pgoutput::RelationId id) const;
    WriterId lane_for(const Destination& d, const std::string& key) const;
    // Yes, no, or unknown (a scope column that `tuple` does not carry).
    enum class InScope { Yes, No, Unknown };
    static InScope in_scope(const Destination& d, const pgoutput::TupleData& tuple, bool key_only);
    // A change outside the scope: nothing, or the removal of a key that may have been in it.
    // True when handled so (not the target's change to apply).
    template <typename Bound, typename RemoveFn>
    bool scoped_out(const Destination& d, const Bound& bound, const pgoutput::Message& message,
                    RemoveFn&& remove) const;
    template <typename Bound>
    void route_change(const Destination& d, const Bound& bound, const pgoutput::Message& message,
                      std::vector<Operation>& out) const;

    const std::vector<mapping::MappingRule>& mappings_;
    const std::vector<mapping::CompositeRule>& composites_;
    std::size_t lanes_;
    std::unordered_map<pgoutput::RelationId, mapping::BoundMapping> bound_;
    std::unordered_map<pgoutput::RelationId, mapping::BoundMirror> mirrors_;
    std::unordered_map<pgoutput::RelationId, Destination> destinations_;
};

// The text of a mirror key as the target sees it (the single key column's value): what a
// routed mirror's lane is computed from.
std::string mirror_key_text(const std::vector<std::string>& key);

}  // namespace authsync::pipeline
