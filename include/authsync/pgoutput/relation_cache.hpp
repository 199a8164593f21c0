// RelationCache: what the stream has told us about relations and types, keyed by OID.
//
// pgoutput sends a Relation message before the first DML on a relation in a session and again
// whenever its schema changes; a new message always replaces the cached entry (never merged).
// A DML message naming a relation the cache has not seen is a protocol error, and so is a tuple
// whose column count differs from its relation's. Clear it on reconnect: OIDs are only
// meaningful within one replication session. Pure.
#pragma once

#include <string>
#include <unordered_map>

#include "authsync/pgoutput/messages.hpp"

namespace authsync::pgoutput {

class RelationCache {
public:
    void apply(const Relation& relation);
    void apply(const Type& type);

    // Throws ProtocolError naming the message when the relation is unknown.
    const Relation& get(RelationId id, const char* message) const;
    const Relation* find(RelationId id) const;
    // The name of a type sent by a Type message, or nullptr.
    const Type* find_type(TypeId id) const;

    // Checks a DML tuple against its relation's column count; throws ProtocolError on mismatch.
    static void check_tuple(const Relation& relation, const TupleData& tuple, const char* message);

    void clear();
    std::size_t size() const { return relations_.size(); }

private:
    std::unordered_map<RelationId, Relation> relations_;
    std::unordered_map<TypeId, Type> types_;
};

// `schema.table`, with pg_catalog for an empty namespace.
std::string qualified_name(const Relation& relation);

}  // namespace authsync::pgoutput
