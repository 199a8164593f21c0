#include "authsync/mapping/composite.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "authsync/core/error.hpp"
#include "authsync/core/sql.hpp"

namespace authsync::mapping {

const MirrorColumn* MirrorSource::column(std::string_view name) const {
    for (const auto& c : columns) {
        if (c.name == name) return &c;
    }
    return nullptr;
}

const ComposedTarget* CompositeRule::target(std::string_view name) const {
    for (const auto& t : targets) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

namespace {

bool is_name_char(char c, bool first) {
    return (c >= 'a' && c <= 'z') || c == '_' || (!first && c >= '0' && c <= '9');
}

// Calls `f(name, begin, end)` for each {{name}} in text.
template <typename F>
void for_each_placeholder(std::string_view text, F&& f) {
    std::size_t pos = 0;
    while ((pos = text.find("{{", pos)) != std::string_view::npos) {
        const auto close = text.find("}}", pos + 2);
        if (close == std::string_view::npos) return;
        auto name = text.substr(pos + 2, close - pos - 2);
        bool valid = !name.empty();
        for (std::size_t i = 0; i < name.size() && valid; ++i)
            valid = is_name_char(name[i], i == 0);
        if (valid) {
            f(name, pos, close + 2);
            pos = close + 2;
        } else {
            pos += 2;
        }
    }
}

}  // namespace

std::string substitute(std::string_view text, const std::map<std::string, std::string>& values) {
    std::string out;
    std::size_t copied = 0;
    for_each_placeholder(text, [&](std::string_view name, std::size_t begin, std::size_t end) {
        auto it = values.find(std::string(name));
        if (it == values.end()) return;
        out.append(text.substr(copied, begin - copied));
        out += quote_literal(it->second);
        copied = end;
    });
    out.append(text.substr(copied));
    return out;
}

std::optional<std::string> first_placeholder(std::string_view text) {
    std::optional<std::string> found;
    for_each_placeholder(text, [&](std::string_view name, std::size_t, std::size_t) {
        if (!found) found = std::string(name);
    });
    return found;
}

void CompositeRule::resolve(const std::map<std::string, std::string>& values) {
    for (const auto& [name, value] : values) {
        // A value is data: "{{" in it would be taken for a placeholder by a later pass.
        if (value.find("{{") != std::string::npos) {
            throw ConfigError(
                fmt::format("preset {}: the value of {} contains \"{{{{\"", preset, name));
        }
    }
    this->values.insert(values.begin(), values.end());
    for (auto& s : sources) {
        s.scope_values.clear();
        for (const auto& [column, name] : s.scope) {
            // A lookup's value, else an option's (the preset's parse checked the name).
            if (auto v = this->values.find(name); v != this->values.end()) {
                s.scope_values.emplace_back(column, v->second);
            } else if (auto o = options.find(name); o != options.end()) {
                s.scope_values.emplace_back(column, o->second);
            } else {
                throw ConfigError(fmt::format("preset {}: scope of {} names {}, which has no value",
                                              preset, s.source_name(), name));
            }
        }
    }
    for_each_sql(*this, [&](std::string& sql) {
        sql = substitute(sql, values);
        if (auto left = first_placeholder(sql)) {
            throw ConfigError(
                fmt::format("preset {} uses {{{{{}}}}}, which has no value", preset, *left));
        }
    });
}

bool CompositeRule::resolved() const {
    bool all = true;
    for_each_sql(*this, [&](const std::string& sql) { all = all && !first_placeholder(sql); });
    return all;
}

std::string CompositeRule::scope() const {
    std::string out = "preset=" + preset;
    for (const auto& [k, v] : options) out += "; " + k + "=" + v;
    for (const auto& [k, v] : values) out += "; " + k + "=" + v;
    return out;
}

bool MirrorRow::partial() const {
    for (bool p : present) {
        if (!p) return true;
    }
    return false;
}

void MirrorRow::merge_from(const MirrorRow& newer) {
    for (std::size_t i = 0; i < values.size() && i < newer.values.size(); ++i) {
        if (newer.present[i]) {
            values[i] = newer.values[i];
            present[i] = true;
        }
    }
}

BoundMirror BoundMirror::bind(const MirrorSource& source, const pgoutput::Relation& relation) {
    BoundMirror b;
    b.source_ = source;
    b.relation_name_ = relation.namespace_name + "." + relation.relation_name;
    if (relation.namespace_name != source.source_schema ||
        relation.relation_name != source.source_table) {
        throw MappingError(fmt::format("relation {} is not the mirrored table {}", b.relation_name_,
                                       source.source_name()));
    }
    b.column_count_ = relation.columns.size();
    for (const auto& c : source.columns) {
        int position = -1;
        for (std::size_t i = 0; i < relation.columns.size(); ++i) {
            if (relation.columns[i].name == c.name) position = static_cast<int>(i);
        }
        if (position < 0 && !c.optional) {
            throw MappingError(fmt::format(
                "column \"{}\" of {} is not in the stream (it is missing on the provider, or "
                "the publication's column list leaves it out)",
                c.name, b.relation_name_));
        }
        b.positions_.push_back(position);
    }
    for (const auto& k : source.key_columns) {
        bool found = false;
        for (std::size_t i = 0; i < source.columns.size(); ++i) {
            if (source.columns[i].name == k) {
                if (b.positions_[i] < 0) {
                    throw MappingError(fmt::format("key column \"{}\" of {} is not in the stream",
                                                   k, b.relation_name_));
                }
                b.key_indexes_.push_back(i);
                found = true;
            }
        }
        if (!found) {
            throw MappingError(fmt::format("key column \"{}\" of {} is not a mirrored column", k,
                                           b.relation_name_));
        }
    }
    return b;
}

MirrorRow BoundMirror::map_new(const pgoutput::TupleData& tuple,
                               const pgoutput::TupleData* old_tuple) const {
    if (tuple.size() != column_count_) {
        throw MappingError(fmt::format("a tuple of {} has {} columns, its relation {}",
                                       relation_name_, tuple.size(), column_count_));
    }
    MirrorRow row;
    row.values.resize(positions_.size());
    row.present.assign(positions_.size(), true);
    for (std::size_t i = 0; i < positions_.size(); ++i) {
        if (positions_[i] < 0) continue;  // optional and absent: NULL
        const auto* col = &tuple[static_cast<std::size_t>(positions_[i])];
        const bool is_key =
            std::find(key_indexes_.begin(), key_indexes_.end(), i) != key_indexes_.end();
        if (col->kind == pgoutput::ColumnKind::UnchangedToast && is_key && old_tuple &&
            old_tuple->size() == column_count_) {
            col = &(*old_tuple)[static_cast<std::size_t>(positions_[i])];
        }
        switch (col->kind) {
            case pgoutput::ColumnKind::Null: break;
            case pgoutput::ColumnKind::UnchangedToast:
                if (is_key) {
                    throw MappingError(
                        fmt::format("key column \"{}\" of {} was sent as unchanged "
                                    "TOAST without an old tuple",
                                    source_.columns[i].name, relation_name_));
                }
                row.present[i] = false;
                break;
            case pgoutput::ColumnKind::Text: row.values[i] = col->value; break;
            case pgoutput::ColumnKind::Binary:
                throw MappingError(fmt::format("column \"{}\" of {} arrived in binary format",
                                               source_.columns[i].name, relation_name_));
        }
        if (is_key && !row.values[i]) {
            throw MappingError(fmt::format("key column \"{}\" of {} is null",
                                           source_.columns[i].name, relation_name_));
        }
    }
    return row;
}

std::vector<std::string> BoundMirror::key_of_old(const pgoutput::TupleData& old_tuple) const {
    if (old_tuple.size() != column_count_) {
        throw MappingError(fmt::format("an old tuple of {} has {} columns, its relation {}",
                                       relation_name_, old_tuple.size(), column_count_));
    }
    std::vector<std::string> key;
    for (auto i : key_indexes_) {
        const auto& col = old_tuple[static_cast<std::size_t>(positions_[i])];
        if (col.kind != pgoutput::ColumnKind::Text) {
            throw MappingError(
                fmt::format("key column \"{}\" of {} is missing from the old tuple "
                            "(it must be part of the replica identity)",
                            source_.columns[i].name, relation_name_));
        }
        key.push_back(col.value);
    }
    return key;
}

std::vector<std::string> BoundMirror::key_of(const MirrorRow& row) const {
    std::vector<std::string> key;
    for (auto i : key_indexes_) key.push_back(row.values[i].value_or(""));
    return key;
}

}  // namespace authsync::mapping
