#include "authsync/pgoutput/decoder.hpp"

#include <fmt/format.h>

#include "authsync/core/byte_reader.hpp"
#include "authsync/core/error.hpp"

namespace authsync::pgoutput {

namespace {

const char* name_of_type_byte(char c) {
    switch (c) {
        case 'B': return "Begin message";
        case 'C': return "Commit message";
        case 'O': return "Origin message";
        case 'R': return "Relation message";
        case 'Y': return "Type message";
        case 'I': return "Insert message";
        case 'U': return "Update message";
        case 'D': return "Delete message";
        case 'T': return "Truncate message";
        case 'M': return "Message message";
        case 'S': return "Stream Start message";
        case 'E': return "Stream Stop message";
        case 'c': return "Stream Commit message";
        case 'A': return "Stream Abort message";
        case 'b': return "Begin Prepare message";
        case 'P': return "Prepare message";
        case 'K': return "Commit Prepared message";
        case 'r': return "Rollback Prepared message";
        case 'p': return "Stream Prepare message";
        default: return nullptr;
    }
}

// The minimum protocol version that may send each message type.
int min_version_of(char c) {
    switch (c) {
        case 'S':
        case 'E':
        case 'c':
        case 'A': return 2;
        case 'b':
        case 'P':
        case 'K':
        case 'r':
        case 'p': return 3;
        default: return 1;
    }
}

std::uint8_t read_zero_flags(ByteReader& r) {
    auto flags = r.read_u8();
    if (flags != 0) r.fail_at(r.offset() - 1, fmt::format("unexpected flags {}", flags));
    return flags;
}

bool read_bool(ByteReader& r, const char* field) {
    auto v = r.read_u8();
    if (v > 1) r.fail_at(r.offset() - 1, fmt::format("{} must be 0 or 1, got {}", field, v));
    return v == 1;
}

Lsn read_lsn(ByteReader& r) {
    return Lsn{r.read_u64()};
}
PgTimestamp read_time(ByteReader& r) {
    return PgTimestamp{r.read_i64()};
}

std::size_t read_length(ByteReader& r, const char* field) {
    auto at = r.offset();
    auto n = r.read_i32();
    if (n < 0) r.fail_at(at, fmt::format("negative {} {}", field, n));
    return static_cast<std::size_t>(n);
}

TupleData read_tuple(ByteReader& r) {
    auto at = r.offset();
    auto ncols = r.read_i16();
    if (ncols < 0) r.fail_at(at, fmt::format("negative column count {}", ncols));
    TupleData tuple;
    tuple.reserve(static_cast<std::size_t>(ncols));
    for (int i = 0; i < ncols; ++i) {
        TupleColumn col;
        auto kind_at = r.offset();
        auto kind = static_cast<char>(r.read_u8());
        switch (kind) {
            case 'n': col.kind = ColumnKind::Null; break;
            case 'u': col.kind = ColumnKind::UnchangedToast; break;
            case 't':
            case 'b': {
                col.kind = kind == 't' ? ColumnKind::Text : ColumnKind::Binary;
                auto len = read_length(r, "column length");
                auto bytes = r.read_bytes(len);
                col.value.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
                break;
            }
            default:
                r.fail_at(kind_at,
                          fmt::format("unknown tuple column kind 0x{:02x} in column {}",
                                      static_cast<unsigned>(static_cast<unsigned char>(kind)), i));
        }
        tuple.push_back(std::move(col));
    }
    return tuple;
}

void expect_byte(ByteReader& r, char expected, const char* what) {
    auto at = r.offset();
    auto c = static_cast<char>(r.read_u8());
    if (c != expected) {
        r.fail_at(at, fmt::format("expected '{}' ({}), got 0x{:02x}", expected, what,
                                  static_cast<unsigned>(static_cast<unsigned char>(c))));
    }
}

OldTupleKind read_old_kind(ByteReader& r) {
    auto at = r.offset();
    auto c = static_cast<char>(r.read_u8());
    if (c == 'K') return OldTupleKind::Key;
    if (c == 'O') return OldTupleKind::Old;
    r.fail_at(at, fmt::format("expected 'K' or 'O' before the old tuple, got 0x{:02x}",
                              static_cast<unsigned>(static_cast<unsigned char>(c))));
}

ReplicaIdentity read_replica_identity(ByteReader& r) {
    auto at = r.offset();
    auto c = static_cast<char>(r.read_u8());
    switch (c) {
        case 'd': return ReplicaIdentity::Default;
        case 'n': return ReplicaIdentity::Nothing;
        case 'f': return ReplicaIdentity::Full;
        case 'i': return ReplicaIdentity::Index;
        default:
            r.fail_at(at, fmt::format("unknown replica identity 0x{:02x}",
                                      static_cast<unsigned>(static_cast<unsigned char>(c))));
    }
}

RelationId read_relation_id(ByteReader& r) {
    auto at = r.offset();
    auto id = r.read_u32();
    if (id == 0) r.fail_at(at, "invalid relation id 0");
    return id;
}

}  // namespace

Decoder::Decoder(DecoderOptions options) : options_(options) {
    if (options_.proto_version < 1 || options_.proto_version > 4) {
        throw ProtocolError(
            fmt::format("unsupported pgoutput protocol version {}", options_.proto_version));
    }
}

Message Decoder::decode(std::span<const std::byte> bytes) {
    if (bytes.empty()) throw ProtocolError("malformed pgoutput message: empty message");
    const char type = std::to_integer<char>(bytes[0]);
    const char* what = name_of_type_byte(type);
    if (what == nullptr) {
        throw ProtocolError(
            fmt::format("malformed pgoutput message: unknown message type 0x{:02x} at offset 0",
                        static_cast<unsigned>(static_cast<unsigned char>(type))));
    }
    ByteReader r(bytes, what);
    r.read_u8();
    if (options_.proto_version < min_version_of(type)) {
        r.fail_at(0, fmt::format("not sent by protocol version {}", options_.proto_version));
    }
    // Messages that may only appear outside, or only inside, a Stream Start/Stop block.
    switch (type) {
        case 'B':
        case 'C':
        case 'S':
        case 'c':
        case 'A':
        case 'b':
        case 'P':
        case 'K':
        case 'r':
        case 'p':
            if (in_stream_) r.fail_at(0, "inside a streamed block (no Stream Stop seen)");
            break;
        case 'E':
            if (!in_stream_) r.fail_at(0, "outside a streamed block (no Stream Start seen)");
            break;
        default: break;
    }
    auto stream_xid = [&]() -> std::optional<Xid> {
        if (!in_stream_) return std::nullopt;
        return r.read_u32();
    };

    Message out;
    switch (type) {
        case 'B': {
            Begin m;
            m.final_lsn = read_lsn(r);
            m.commit_time = read_time(r);
            m.xid = r.read_u32();
            out = m;
            break;
        }
        case 'C': {
            Commit m;
            m.flags = read_zero_flags(r);
            m.commit_lsn = read_lsn(r);
            m.end_lsn = read_lsn(r);
            m.commit_time = read_time(r);
            out = m;
            break;
        }
        case 'O': {
            Origin m;
            m.commit_lsn = read_lsn(r);
            m.name = r.read_cstring();
            out = std::move(m);
            break;
        }
        case 'R': {
            Relation m;
            m.xid = stream_xid();
            m.relation_id = read_relation_id(r);
            m.namespace_name = r.read_cstring();
            m.relation_name = r.read_cstring();
            if (m.relation_name.empty()) r.fail("empty relation name");
            m.replica_identity = read_replica_identity(r);
            auto at = r.offset();
            auto ncols = r.read_i16();
            if (ncols < 0) r.fail_at(at, fmt::format("negative column count {}", ncols));
            m.columns.reserve(static_cast<std::size_t>(ncols));
            for (int i = 0; i < ncols; ++i) {
                RelationColumn col;
                auto flags_at = r.offset();
                auto flags = r.read_u8();
                if (flags > 1) r.fail_at(flags_at, fmt::format("unknown column flags {}", flags));
                col.part_of_key = flags == 1;
                col.name = r.read_cstring();
                if (col.name.empty()) r.fail(fmt::format("empty name for column {}", i));
                col.type_id = r.read_u32();
                col.type_modifier = r.read_i32();
                m.columns.push_back(std::move(col));
            }
            out = std::move(m);
            break;
        }
        case 'Y': {
            Type m;
            m.xid = stream_xid();
            m.type_id = r.read_u32();
            m.namespace_name = r.read_cstring();
            m.type_name = r.read_cstring();
            out = std::move(m);
            break;
        }
        case 'I': {
            Insert m;
            m.xid = stream_xid();
            m.relation_id = read_relation_id(r);
            expect_byte(r, 'N', "new tuple");
            m.new_tuple = read_tuple(r);
            out = std::move(m);
            break;
        }
        case 'U': {
            Update m;
            m.xid = stream_xid();
            m.relation_id = read_relation_id(r);
            auto at = r.offset();
            auto c = static_cast<char>(r.read_u8());
            if (c == 'K' || c == 'O') {
                m.old_kind = c == 'K' ? OldTupleKind::Key : OldTupleKind::Old;
                m.old_tuple = read_tuple(r);
                expect_byte(r, 'N', "new tuple");
            } else if (c != 'N') {
                r.fail_at(at, fmt::format("expected 'K', 'O' or 'N', got 0x{:02x}",
                                          static_cast<unsigned>(static_cast<unsigned char>(c))));
            }
            m.new_tuple = read_tuple(r);
            out = std::move(m);
            break;
        }
        case 'D': {
            Delete m;
            m.xid = stream_xid();
            m.relation_id = read_relation_id(r);
            m.old_kind = read_old_kind(r);
            m.old_tuple = read_tuple(r);
            out = std::move(m);
            break;
        }
        case 'T': {
            Truncate m;
            m.xid = stream_xid();
            auto at = r.offset();
            auto n = r.read_i32();
            if (n <= 0) r.fail_at(at, fmt::format("invalid relation count {}", n));
            auto opt_at = r.offset();
            m.options = r.read_u8();
            if (m.options & ~(kTruncateCascade | kTruncateRestartIdentity)) {
                r.fail_at(opt_at, fmt::format("unknown truncate options {}", m.options));
            }
            // Bound the reservation by what the buffer can hold, not by the claimed count.
            if (static_cast<std::size_t>(n) > r.remaining() / 4) {
                r.fail(fmt::format("insufficient data for {} relation ids ({} bytes left)", n,
                                   r.remaining()));
            }
            m.relation_ids.reserve(static_cast<std::size_t>(n));
            for (int i = 0; i < n; ++i) m.relation_ids.push_back(read_relation_id(r));
            out = std::move(m);
            break;
        }
        case 'M': {
            LogicalMessage m;
            m.xid = stream_xid();
            auto flags_at = r.offset();
            auto flags = r.read_u8();
            if (flags > 1) r.fail_at(flags_at, fmt::format("unknown message flags {}", flags));
            m.transactional = flags == 1;
            m.lsn = read_lsn(r);
            m.prefix = r.read_cstring();
            auto len = read_length(r, "content length");
            auto content = r.read_bytes(len);
            m.content.assign(reinterpret_cast<const char*>(content.data()), content.size());
            out = std::move(m);
            break;
        }
        case 'S': {
            StreamStart m;
            m.xid = r.read_u32();
            m.first_segment = read_bool(r, "first segment flag");
            out = m;
            break;
        }
        case 'E': out = StreamStop{}; break;
        case 'c': {
            StreamCommit m;
            m.xid = r.read_u32();
            m.flags = read_zero_flags(r);
            m.commit_lsn = read_lsn(r);
            m.end_lsn = read_lsn(r);
            m.commit_time = read_time(r);
            out = m;
            break;
        }
        case 'A': {
            StreamAbort m;
            m.xid = r.read_u32();
            m.subxid = r.read_u32();
            if (options_.proto_version >= 4 && options_.streaming_parallel) {
                m.abort_lsn = read_lsn(r);
                m.abort_time = read_time(r);
            }
            out = m;
            break;
        }
        case 'b': {
            BeginPrepare m;
            m.prepare_lsn = read_lsn(r);
            m.end_lsn = read_lsn(r);
            m.prepare_time = read_time(r);
            m.xid = r.read_u32();
            m.gid = r.read_cstring();
            out = std::move(m);
            break;
        }
        case 'P':
        case 'p': {
            Prepare m;
            m.streamed = type == 'p';
            m.flags = read_zero_flags(r);
            m.prepare_lsn = read_lsn(r);
            m.end_lsn = read_lsn(r);
            m.prepare_time = read_time(r);
            m.xid = r.read_u32();
            m.gid = r.read_cstring();
            out = std::move(m);
            break;
        }
        case 'K': {
            CommitPrepared m;
            m.flags = read_zero_flags(r);
            m.commit_lsn = read_lsn(r);
            m.end_lsn = read_lsn(r);
            m.commit_time = read_time(r);
            m.xid = r.read_u32();
            m.gid = r.read_cstring();
            out = std::move(m);
            break;
        }
        case 'r': {
            RollbackPrepared m;
            m.flags = read_zero_flags(r);
            m.prepare_end_lsn = read_lsn(r);
            m.rollback_end_lsn = read_lsn(r);
            m.prepare_time = read_time(r);
            m.rollback_time = read_time(r);
            m.xid = r.read_u32();
            m.gid = r.read_cstring();
            out = std::move(m);
            break;
        }
    }
    r.expect_end();
    // Only a whole, valid message changes the stream state.
    if (type == 'S') in_stream_ = true;
    if (type == 'E') in_stream_ = false;
    return out;
}

const char* message_name(const Message& message) {
    struct Visitor {
        const char* operator()(const Begin&) const { return "Begin"; }
        const char* operator()(const Commit&) const { return "Commit"; }
        const char* operator()(const Origin&) const { return "Origin"; }
        const char* operator()(const Relation&) const { return "Relation"; }
        const char* operator()(const Type&) const { return "Type"; }
        const char* operator()(const Insert&) const { return "Insert"; }
        const char* operator()(const Update&) const { return "Update"; }
        const char* operator()(const Delete&) const { return "Delete"; }
        const char* operator()(const Truncate&) const { return "Truncate"; }
        const char* operator()(const LogicalMessage&) const { return "Message"; }
        const char* operator()(const StreamStart&) const { return "Stream Start"; }
        const char* operator()(const StreamStop&) const { return "Stream Stop"; }
        const char* operator()(const StreamCommit&) const { return "Stream Commit"; }
        const char* operator()(const StreamAbort&) const { return "Stream Abort"; }
        const char* operator()(const BeginPrepare&) const { return "Begin Prepare"; }
        const char* operator()(const Prepare& p) const {
            return p.streamed ? "Stream Prepare" : "Prepare";
        }
        const char* operator()(const CommitPrepared&) const { return "Commit Prepared"; }
        const char* operator()(const RollbackPrepared&) const { return "Rollback Prepared"; }
    };
    return std::visit(Visitor{}, message);
}

}  // namespace authsync::pgoutput
