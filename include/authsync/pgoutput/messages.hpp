// Plain structs for the messages of PostgreSQL's logical replication protocol (pgoutput),
// protocol versions 1 to 4. See decoder.hpp for the byte layout.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "authsync/core/lsn.hpp"
#include "authsync/core/pg_time.hpp"

namespace authsync::pgoutput {

using Xid = std::uint32_t;
using RelationId = std::uint32_t;
using TypeId = std::uint32_t;

enum class ColumnKind : char {
    Null = 'n',
    UnchangedToast = 'u',  // the value did not change and is not sent: never write it as NULL
    Text = 't',
    Binary = 'b',
};

struct TupleColumn {
    ColumnKind kind = ColumnKind::Null;
    std::string value;  // empty unless Text or Binary

    bool operator==(const TupleColumn&) const = default;
};

using TupleData = std::vector<TupleColumn>;

// Replica identity setting of a relation, as pg_class.relreplident.
enum class ReplicaIdentity : char {
    Default = 'd',
    Nothing = 'n',
    Full = 'f',
    Index = 'i',
};

struct RelationColumn {
    bool part_of_key = false;
    std::string name;
    TypeId type_id = 0;
    std::int32_t type_modifier = -1;

    bool operator==(const RelationColumn&) const = default;
};

struct Begin {
    Lsn final_lsn;
    PgTimestamp commit_time;
    Xid xid = 0;
};

struct Commit {
    std::uint8_t flags = 0;
    Lsn commit_lsn;
    Lsn end_lsn;
    PgTimestamp commit_time;
};

struct Origin {
    Lsn commit_lsn;
    std::string name;
};

struct Relation {
    std::optional<Xid> xid;  // present inside a streamed transaction
    RelationId relation_id = 0;
    std::string namespace_name;  // empty means pg_catalog
    std::string relation_name;
    ReplicaIdentity replica_identity = ReplicaIdentity::Default;
    std::vector<RelationColumn> columns;

    bool operator==(const Relation&) const = default;
};

struct Type {
    std::optional<Xid> xid;
    TypeId type_id = 0;
    std::string namespace_name;
    std::string type_name;
};

struct Insert {
    std::optional<Xid> xid;
    RelationId relation_id = 0;
    TupleData new_tuple;
};

enum class OldTupleKind : char {
    None = 0,
    Key = 'K',  // only the replica identity columns
    Old = 'O',  // the whole old row (REPLICA IDENTITY FULL)
};

struct Update {
    std::optional<Xid> xid;
    RelationId relation_id = 0;
    OldTupleKind old_kind = OldTupleKind::None;
    TupleData old_tuple;  // empty when old_kind is None
    TupleData new_tuple;
};

struct Delete {
    std::optional<Xid> xid;
    RelationId relation_id = 0;
    OldTupleKind old_kind = OldTupleKind::Key;  // Key or Old
    TupleData old_tuple;
};

inline constexpr std::uint8_t kTruncateCascade = 1;
inline constexpr std::uint8_t kTruncateRestartIdentity = 2;

struct Truncate {
    std::optional<Xid> xid;
    std::uint8_t options = 0;
    std::vector<RelationId> relation_ids;

    bool cascade() const { return options & kTruncateCascade; }
    bool restart_identity() const { return options & kTruncateRestartIdentity; }
};

// A logical decoding message (pg_logical_emit_message).
struct LogicalMessage {
    std::optional<Xid> xid;
    bool transactional = false;
    Lsn lsn;
    std::string prefix;
    std::string content;
};

struct StreamStart {
    Xid xid = 0;
    bool first_segment = false;
};

struct StreamStop {};

struct StreamCommit {
    Xid xid = 0;
    std::uint8_t flags = 0;
    Lsn commit_lsn;
    Lsn end_lsn;
    PgTimestamp commit_time;
};

struct StreamAbort {
    Xid xid = 0;
    Xid subxid = 0;
    std::optional<Lsn> abort_lsn;           // protocol 4 with streaming = parallel
    std::optional<PgTimestamp> abort_time;  // likewise
};

struct BeginPrepare {
    Lsn prepare_lsn;
    Lsn end_lsn;
    PgTimestamp prepare_time;
    Xid xid = 0;
    std::string gid;
};

// Prepare ('P') and Stream Prepare ('p') share one layout.
struct Prepare {
    bool streamed = false;
    std::uint8_t flags = 0;
    Lsn prepare_lsn;
    Lsn end_lsn;
    PgTimestamp prepare_time;
    Xid xid = 0;
    std::string gid;
};

struct CommitPrepared {
    std::uint8_t flags = 0;
    Lsn commit_lsn;
    Lsn end_lsn;
    PgTimestamp commit_time;
    Xid xid = 0;
    std::string gid;
};

struct RollbackPrepared {
    std::uint8_t flags = 0;
    Lsn prepare_end_lsn;
    Lsn rollback_end_lsn;
    PgTimestamp prepare_time;
    PgTimestamp rollback_time;
    Xid xid = 0;
    std::string gid;
};

using Message = std::variant<Begin, Commit, Origin, Relation, Type, Insert, Update, Delete,
                             Truncate, LogicalMessage, StreamStart, StreamStop, StreamCommit,
                             StreamAbort, BeginPrepare, Prepare, CommitPrepared, RollbackPrepared>;

// A short name for logs and errors: "Begin", "Insert", "Stream Prepare", ...
const char* message_name(const Message& message);

}  // namespace authsync::pgoutput
