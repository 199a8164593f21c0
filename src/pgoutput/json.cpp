#include "authsync/pgoutput/json.hpp"

#include "authsync/core/hex.hpp"

namespace authsync::pgoutput {

namespace {

using nlohmann::json;

const char* kind_name(ColumnKind kind) {
    switch (kind) {
        case ColumnKind::Null: return "null";
        case ColumnKind::UnchangedToast: return "unchanged_toast";
        case ColumnKind::Text: return "text";
        case ColumnKind::Binary: return "binary";
    }
    return "?";
}

const char* old_kind_name(OldTupleKind kind) {
    switch (kind) {
        case OldTupleKind::Key: return "key";
        case OldTupleKind::Old: return "full";
        case OldTupleKind::None: return "none";
    }
    return "?";
}

json tuple_json(const Relation& rel, const TupleData& tuple, const char* message) {
    RelationCache::check_tuple(rel, tuple, message);
    json cols = json::array();
    for (std::size_t i = 0; i < tuple.size(); ++i) {
        const auto& c = tuple[i];
        json col = {{"name", rel.columns[i].name}, {"kind", kind_name(c.kind)}};
        if (c.kind == ColumnKind::Text) {
            col["value"] = c.value;
        } else if (c.kind == ColumnKind::Binary) {
            col["value"] = hex_encode(as_bytes(c.value));
        } else if (c.kind == ColumnKind::Null) {
            col["value"] = nullptr;
        }
        cols.push_back(std::move(col));
    }
    return cols;
}

void put_xid(json& j, const std::optional<Xid>& xid) {
    if (xid) j["xid"] = *xid;
}

json relation_ref(const Relation& rel) {
    return {{"relation_id", rel.relation_id}, {"relation", qualified_name(rel)}};
}

struct Renderer {
    const RelationCache& relations;

    json operator()(const Begin& m) const {
        return {{"type", "Begin"},
                {"final_lsn", m.final_lsn.to_string()},
                {"commit_time", m.commit_time.to_iso8601()},
                {"xid", m.xid}};
    }
    json operator()(const Commit& m) const {
        return {{"type", "Commit"},
                {"flags", m.flags},
                {"commit_lsn", m.commit_lsn.to_string()},
                {"end_lsn", m.end_lsn.to_string()},
                {"commit_time", m.commit_time.to_iso8601()}};
    }
    json operator()(const Origin& m) const {
        return {{"type", "Origin"}, {"commit_lsn", m.commit_lsn.to_string()}, {"name", m.name}};
    }
    json operator()(const Relation& m) const {
        json j = {{"type", "Relation"},
                  {"relation_id", m.relation_id},
                  {"namespace", m.namespace_name},
                  {"name", m.relation_name},
                  {"replica_identity", std::string(1, static_cast<char>(m.replica_identity))}};
        put_xid(j, m.xid);
        json cols = json::array();
        for (const auto& c : m.columns) {
            cols.push_back({{"name", c.name},
                            {"type_id", c.type_id},
                            {"type_modifier", c.type_modifier},
                            {"key", c.part_of_key}});
        }
        j["columns"] = std::move(cols);
        return j;
    }
    json operator()(const Type& m) const {
        json j = {{"type", "Type"},
                  {"type_id", m.type_id},
                  {"namespace", m.namespace_name},
                  {"name", m.type_name}};
        put_xid(j, m.xid);
        return j;
    }
    json operator()(const Insert& m) const {
        const auto& rel = relations.get(m.relation_id, "Insert");
        json j = {{"type", "Insert"}};
        j.update(relation_ref(rel));
        put_xid(j, m.xid);
        j["new"] = tuple_json(rel, m.new_tuple, "Insert");
        return j;
    }
    json operator()(const Update& m) const {
        const auto& rel = relations.get(m.relation_id, "Update");
        json j = {{"type", "Update"}};
        j.update(relation_ref(rel));
        put_xid(j, m.xid);
        if (m.old_kind != OldTupleKind::None) {
            j["old_kind"] = old_kind_name(m.old_kind);
            j["old"] = tuple_json(rel, m.old_tuple, "Update");
        }
        j["new"] = tuple_json(rel, m.new_tuple, "Update");
        return j;
    }
    json operator()(const Delete& m) const {
        const auto& rel = relations.get(m.relation_id, "Delete");
        json j = {{"type", "Delete"}};
        j.update(relation_ref(rel));
        put_xid(j, m.xid);
        j["old_kind"] = old_kind_name(m.old_kind);
        j["old"] = tuple_json(rel, m.old_tuple, "Delete");
        return j;
    }
    json operator()(const Truncate& m) const {
        json j = {{"type", "Truncate"},
                  {"cascade", m.cascade()},
                  {"restart_identity", m.restart_identity()}};
        put_xid(j, m.xid);
        json rels = json::array();
        for (auto id : m.relation_ids) rels.push_back(relation_ref(relations.get(id, "Truncate")));
        j["relations"] = std::move(rels);
        return j;
    }
    json operator()(const LogicalMessage& m) const {
        json j = {{"type", "Message"},
                  {"transactional", m.transactional},
                  {"lsn", m.lsn.to_string()},
                  {"prefix", m.prefix}};
        put_xid(j, m.xid);
        // Content is arbitrary bytes: show it as text only when it is valid for JSON.
        try {
            (void)json(m.content).dump();  // throws on invalid UTF-8
            j["content"] = m.content;
        } catch (const json::type_error&) {
            j["content_hex"] = hex_encode(as_bytes(m.content));
        }
        return j;
    }
    json operator()(const StreamStart& m) const {
        return {{"type", "Stream Start"}, {"xid", m.xid}, {"first_segment", m.first_segment}};
    }
    json operator()(const StreamStop&) const { return {{"type", "Stream Stop"}}; }
    json operator()(const StreamCommit& m) const {
        return {{"type", "Stream Commit"},
                {"xid", m.xid},
                {"flags", m.flags},
                {"commit_lsn", m.commit_lsn.to_string()},
                {"end_lsn", m.end_lsn.to_string()},
                {"commit_time", m.commit_time.to_iso8601()}};
    }
    json operator()(const StreamAbort& m) const {
        json j = {{"type", "Stream Abort"}, {"xid", m.xid}, {"subxid", m.subxid}};
        if (m.abort_lsn) j["abort_lsn"] = m.abort_lsn->to_string();
        if (m.abort_time) j["abort_time"] = m.abort_time->to_iso8601();
        return j;
    }
    json operator()(const BeginPrepare& m) const {
        return {{"type", "Begin Prepare"},
                {"prepare_lsn", m.prepare_lsn.to_string()},
                {"end_lsn", m.end_lsn.to_string()},
                {"prepare_time", m.prepare_time.to_iso8601()},
                {"xid", m.xid},
                {"gid", m.gid}};
    }
    json operator()(const Prepare& m) const {
        return {{"type", m.streamed ? "Stream Prepare" : "Prepare"},
                {"flags", m.flags},
                {"prepare_lsn", m.prepare_lsn.to_string()},
                {"end_lsn", m.end_lsn.to_string()},
                {"prepare_time", m.prepare_time.to_iso8601()},
                {"xid", m.xid},
                {"gid", m.gid}};
    }
    json operator()(const CommitPrepared& m) const {
        return {{"type", "Commit Prepared"},
                {"flags", m.flags},
                {"commit_lsn", m.commit_lsn.to_string()},
                {"end_lsn", m.end_lsn.to_string()},
                {"commit_time", m.commit_time.to_iso8601()},
                {"xid", m.xid},
                {"gid", m.gid}};
    }
    json operator()(const RollbackPrepared& m) const {
        return {{"type", "Rollback Prepared"},
                {"flags", m.flags},
                {"prepare_end_lsn", m.prepare_end_lsn.to_string()},
                {"rollback_end_lsn", m.rollback_end_lsn.to_string()},
                {"prepare_time", m.prepare_time.to_iso8601()},
                {"rollback_time", m.rollback_time.to_iso8601()},
                {"xid", m.xid},
                {"gid", m.gid}};
    }
};

}  // namespace

nlohmann::json to_json(const Message& message, const RelationCache& relations) {
    return std::visit(Renderer{relations}, message);
}

}  // namespace authsync::pgoutput
