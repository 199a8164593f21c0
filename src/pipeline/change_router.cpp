#include "authsync/pipeline/change_router.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "authsync/core/error.hpp"
#include "authsync/pipeline/lanes.hpp"

namespace authsync::pipeline {

namespace {

using mapping::BoundMapping;
using mapping::BoundMirror;

// The two kinds of destination through one set of overloads: what a new tuple becomes, its
// key, and the removal an old tuple names.
Upsert upsert_of(const BoundMapping& m, const pgoutput::TupleData& tuple,
                 const pgoutput::TupleData* old_tuple) {
    return Upsert{m.map_new(tuple, old_tuple), {}};
}
Upsert upsert_of(const BoundMirror& m, const pgoutput::TupleData& tuple,
                 const pgoutput::TupleData* old_tuple) {
    return Upsert{{}, m.map_new(tuple, old_tuple)};
}
std::string key_text(const BoundMapping&, const Upsert& u) {
    return u.image.key;
}
std::string key_text(const BoundMirror& m, const Upsert& u) {
    return mirror_key_text(m.key_of(u.row));
}
Remove remove_of(const BoundMapping& m, const pgoutput::TupleData& old_tuple) {
    return Remove{m.key_of_old(old_tuple), {}};
}
Remove remove_of(const BoundMirror& m, const pgoutput::TupleData& old_tuple) {
    return Remove{{}, m.key_of_old(old_tuple)};
}
std::string key_text(const BoundMapping&, const Remove& r) {
    return r.key;
}
std::string key_text(const BoundMirror&, const Remove& r) {
    return mirror_key_text(r.mirror_key);
}

// `changed.id`, `changed."id"`, optionally cast `::text`: the changed row's own key column.
bool names_key_column(std::string key, const std::string& column) {
    std::erase_if(key, [](char c) { return c == ' ' || c == '\t' || c == '\n'; });
    constexpr std::string_view kCast = "::text";
    if (key.ends_with(kCast)) key.resize(key.size() - kCast.size());
    constexpr std::string_view kPrefix = "changed.";
    if (!key.starts_with(kPrefix)) return false;
    key.erase(0, kPrefix.size());
    return key == column || key == "\"" + column + "\"";
}

}  // namespace

std::string mirror_key_text(const std::vector<std::string>& key) {
    if (key.size() == 1) return key.front();
    std::string text;
    for (std::size_t i = 0; i < key.size(); ++i) mapping::append_key_part(text, i, key[i]);
    return text;
}

bool ChangeRouter::routable(const mapping::CompositeRule& composite) {
    if (composite.sources.size() != 1) return false;
    const auto& source = composite.sources.front();
    if (source.key_columns.size() != 1 || source.affects.empty()) return false;
    for (const auto& a : source.affects) {
        if (!a.join.empty() || !names_key_column(a.key, source.key_columns.front())) return false;
    }
    return true;
}

ChangeRouter::ChangeRouter(const std::vector<mapping::MappingRule>& mappings,
                           const std::vector<mapping::CompositeRule>& composites, std::size_t lanes)
    : mappings_(mappings), composites_(composites), lanes_(lanes) {
    if (lanes == 0) throw ConfigError("apply.lanes must be at least 1");
}

namespace {

// The scope's terms over the relation's columns; a scope column it lacks is an error (the
// publication must send it).
std::vector<ScopeTerm> bind_scope(const std::vector<std::pair<std::string, std::string>>& scope,
                                  const pgoutput::Relation& rel, const std::string& source) {
    std::vector<ScopeTerm> terms;
    for (const auto& [column, value] : scope) {
        const auto it = std::find_if(rel.columns.begin(), rel.columns.end(),
                                     [&](const auto& c) { return c.name == column; });
        if (it == rel.columns.end()) {
            throw MappingError(
                fmt::format("{}: the stream does not carry scope column \"{}\" "
                            "(recreate the publication so that it does)",
                            source, column));
        }
        terms.push_back(
            {static_cast<std::size_t>(it - rel.columns.begin()), it->part_of_key, value});
    }
    return terms;
}

}  // namespace

void ChangeRouter::bind(const pgoutput::Relation& rel) {
    bound_.erase(rel.relation_id);
    mirrors_.erase(rel.relation_id);
    destinations_.erase(rel.relation_id);
    for (const auto& rule : mappings_) {
        if (rule.source_schema == rel.namespace_name && rule.source_table == rel.relation_name) {
            auto scope = bind_scope(rule.scope, rel, rule.source_name());
            auto& m = bound_.emplace(rel.relation_id, BoundMapping::bind(rule, rel)).first->second;
            destinations_[rel.relation_id] =
                Destination{&m, nullptr, true, rule.source_name(), std::move(scope)};
            return;
        }
    }
    for (const auto& composite : composites_) {
        for (const auto& source : composite.sources) {
            if (source.source_schema == rel.namespace_name &&
                source.source_table == rel.relation_name) {
                if (source.scope_values.size() != source.scope.size()) {
                    throw std::logic_error("a preset's scope bound before its lookups ran");
                }
                auto scope = bind_scope(source.scope_values, rel, source.source_name());
                auto& m =
                    mirrors_.emplace(rel.relation_id, BoundMirror::bind(source, rel)).first->second;
                destinations_[rel.relation_id] = Destination{
                    nullptr, &m, routable(composite), source.source_name(), std::move(scope)};
                return;
            }
        }
    }
}

const Destination* ChangeRouter::destination_for(pgoutput::RelationId id) const {
    auto it = destinations_.find(id);
    return it == destinations_.end() ? nullptr : &it->second;
}

WriterId ChangeRouter::lane_for(const Destination& d, const std::string& key) const {
    return d.routed ? lane_of(key, lanes_) : 0;
}

ChangeRouter::InScope ChangeRouter::in_scope(const Destination& d, const pgoutput::TupleData& tuple,
                                             bool key_only) {
    for (const auto& term : d.scope) {
        if (key_only && !term.in_key) return InScope::Unknown;
        const auto& c = tuple.at(term.column);
        if (c.kind == pgoutput::ColumnKind::UnchangedToast) {
            // An unchanged TOAST value carries nothing to compare: a scope column never is one
            // in practice, and guessing would apply another tenant's row or drop this one's.
            throw MappingError(fmt::format(
                "{}: a scope column arrived as an unchanged TOAST value; its scope is unknown",
                d.source_name));
        }
        if (c.kind != pgoutput::ColumnKind::Text || c.value != term.value) return InScope::No;
    }
    return InScope::Yes;
}

template <typename Bound, typename RemoveFn>
bool ChangeRouter::scoped_out(const Destination& d, const Bound& bound,
                              const pgoutput::Message& message, RemoveFn&& remove) const {
    using pgoutput::OldTupleKind;
    if (auto* ins = std::get_if<pgoutput::Insert>(&message)) {
        return in_scope(d, ins->new_tuple, false) != InScope::Yes;
    }
    if (auto* upd = std::get_if<pgoutput::Update>(&message)) {
        if (in_scope(d, upd->new_tuple, false) == InScope::Yes) return false;
        // Not the target's row now: it goes, in case it was before (moved out of the scope).
        if (upd->old_kind != OldTupleKind::None) {
            const bool key_only = upd->old_kind == OldTupleKind::Key;
            if (in_scope(d, upd->old_tuple, key_only) != InScope::No) {
                remove(remove_of(bound, upd->old_tuple));
            }
        } else if (!std::all_of(d.scope.begin(), d.scope.end(),
                                [](const ScopeTerm& t) { return t.in_key; })) {
            // Same key, and no old value of a scope column outside it to tell.
            remove(remove_of(bound, upd->new_tuple));
        }
        return true;
    }
    if (auto* del = std::get_if<pgoutput::Delete>(&message)) {
        const bool key_only = del->old_kind == OldTupleKind::Key;
        return in_scope(d, del->old_tuple, key_only) == InScope::No;
    }
    return false;
}

template <typename Bound>
void ChangeRouter::route_change(const Destination& d, const Bound& bound,
                                const pgoutput::Message& message,
                                std::vector<Operation>& out) const {
    auto remove = [&](Remove r) {
        const auto lane = lane_for(d, key_text(bound, r));
        out.push_back(Operation{lane, &d, std::move(r)});
    };
    if (!d.scope.empty() && scoped_out(d, bound, message, remove)) return;
    if (auto* ins = std::get_if<pgoutput::Insert>(&message)) {
        auto u = upsert_of(bound, ins->new_tuple, nullptr);
        const auto lane = lane_for(d, key_text(bound, u));
        out.push_back(Operation{lane, &d, std::move(u)});
    } else if (auto* upd = std::get_if<pgoutput::Update>(&message)) {
        const bool has_old = upd->old_kind != pgoutput::OldTupleKind::None;
        auto u = upsert_of(bound, upd->new_tuple, has_old ? &upd->old_tuple : nullptr);
        auto key = key_text(bound, u);
        // A key change moves the row: the old key goes by the delete policy, where it was
        // this destination's (another tenant's row may have had the same key).
        if (has_old && (d.scope.empty() ||
                        in_scope(d, upd->old_tuple, upd->old_kind == pgoutput::OldTupleKind::Key) !=
                            InScope::No)) {
            auto old = remove_of(bound, upd->old_tuple);
            if (key_text(bound, old) != key) remove(std::move(old));
        }
        const auto lane = lane_for(d, key);
        out.push_back(Operation{lane, &d, std::move(u)});
    } else if (auto* del = std::get_if<pgoutput::Delete>(&message)) {
        remove(remove_of(bound, del->old_tuple));
    }
}

void ChangeRouter::route(const pgoutput::Message& message, const pgoutput::RelationCache& relations,
                         std::vector<Operation>& out) const {
    using pgoutput::RelationCache;
    if (auto* tr = std::get_if<pgoutput::Truncate>(&message)) {
        for (auto id : tr->relation_ids) {
            relations.get(id, "Truncate");
            const auto* d = destination_for(id);
            if (!d) continue;
            if (!d->routed || lanes_ == 1) {
                out.push_back(Operation{0, d, Truncate{0, 1}});
                continue;
            }
            for (std::size_t lane = 0; lane < lanes_; ++lane) {
                out.push_back(Operation{lane, d, Truncate{lane, lanes_}});
            }
        }
        return;
    }
    pgoutput::RelationId id = 0;
    if (auto* ins = std::get_if<pgoutput::Insert>(&message)) {
        id = ins->relation_id;
        RelationCache::check_tuple(relations.get(id, "Insert"), ins->new_tuple, "Insert");
    } else if (auto* upd = std::get_if<pgoutput::Update>(&message)) {
        id = upd->relation_id;
        const auto& rel = relations.get(id, "Update");
        RelationCache::check_tuple(rel, upd->new_tuple, "Update");
        if (upd->old_kind != pgoutput::OldTupleKind::None) {
            RelationCache::check_tuple(rel, upd->old_tuple, "Update");
        }
    } else if (auto* del = std::get_if<pgoutput::Delete>(&message)) {
        id = del->relation_id;
        RelationCache::check_tuple(relations.get(id, "Delete"), del->old_tuple, "Delete");
    } else {
        throw ProtocolError(
            fmt::format("unexpected {} message (authsync asks for protocol 1 "
                        "without streaming or two-phase)",
                        pgoutput::message_name(message)));
    }
    const auto* d = destination_for(id);
    if (!d) return;
    if (d->mapping) {
        route_change(*d, *d->mapping, message, out);
    } else {
        route_change(*d, *d->mirror, message, out);
    }
}

}  // namespace authsync::pipeline
