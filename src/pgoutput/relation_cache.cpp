#include "authsync/pgoutput/relation_cache.hpp"

#include <fmt/format.h>

#include "authsync/core/error.hpp"

namespace authsync::pgoutput {

void RelationCache::apply(const Relation& relation) {
    relations_.insert_or_assign(relation.relation_id, relation);
}

void RelationCache::apply(const Type& type) {
    types_.insert_or_assign(type.type_id, type);
}

const Relation* RelationCache::find(RelationId id) const {
    auto it = relations_.find(id);
    return it == relations_.end() ? nullptr : &it->second;
}

const Relation& RelationCache::get(RelationId id, const char* message) const {
    if (const Relation* r = find(id)) return *r;
    throw ProtocolError(fmt::format(
        "{} message for unknown relation id {} (no Relation message seen)", message, id));
}

const Type* RelationCache::find_type(TypeId id) const {
    auto it = types_.find(id);
    return it == types_.end() ? nullptr : &it->second;
}

void RelationCache::check_tuple(const Relation& relation, const TupleData& tuple,
                                const char* message) {
    if (tuple.size() != relation.columns.size()) {
        throw ProtocolError(fmt::format(
            "{} message for relation {} (id {}) has {} columns, its Relation message has {}",
            message, qualified_name(relation), relation.relation_id, tuple.size(),
            relation.columns.size()));
    }
}

void RelationCache::clear() {
    relations_.clear();
    types_.clear();
}

std::string qualified_name(const Relation& relation) {
    return (relation.namespace_name.empty() ? std::string("pg_catalog") : relation.namespace_name) +
           "." + relation.relation_name;
}

}  // namespace authsync::pgoutput
