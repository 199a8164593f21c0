// Decoder: pgoutput message bytes in, plain structs out (protocol versions 1 to 4).
//
// Pure and strict, after PostgreSQL's proto.c: every discriminator byte is checked, running out
// of bytes is an error, and so are bytes left over; every error is a ProtocolError naming the
// message type and the offset. The decoder keeps one piece of state, whether it is inside a
// Stream Start/Stop block, because that decides whether DML messages carry an xid. It knows
// nothing of relations: that is RelationCache's job.
//
// Layout (Int = big-endian, String = NUL-terminated; "[xid]" = Int32 xid, only inside a stream):
//   B Begin           Int64 final LSN | Int64 commit time | Int32 xid
//   C Commit          Int8 flags(0) | Int64 commit LSN | Int64 end LSN | Int64 commit time
//   O Origin          Int64 commit LSN | String name
//   R Relation        [xid] Int32 relid | String nspname | String relname | Int8 replident |
//                     Int16 ncols | ncols x (Int8 flags(1=key) | String name | Int32 type | Int32
//                     typmod)
//   Y Type            [xid] Int32 type oid | String nspname | String typname
//   I Insert          [xid] Int32 relid | 'N' TupleData
//   U Update          [xid] Int32 relid | ['K'|'O' TupleData] | 'N' TupleData
//   D Delete          [xid] Int32 relid | 'K'|'O' TupleData
//   T Truncate        [xid] Int32 nrels | Int8 options(1=cascade,2=restart identity) | nrels x
//   Int32 M Message         [xid] Int8 flags(1=transactional) | Int64 LSN | String prefix | Int32 n
//   | Byte[n] S Stream Start    Int32 xid | Int8 first segment(0|1) (v2+) E Stream Stop     - (v2+)
//   c Stream Commit   Int32 xid | Int8 flags(0) | Int64 commit LSN | Int64 end LSN | Int64 time
//   A Stream Abort    Int32 xid | Int32 subxid | [Int64 abort LSN | Int64 abort time]      (v4,
//   parallel) b Begin Prepare   Int64 prepare LSN | Int64 end LSN | Int64 time | Int32 xid | String
//   gid (v3+) P Prepare         Int8 flags(0) | Int64 prepare LSN | Int64 end LSN | Int64 time |
//   Int32 xid | String gid K Commit Prepared Int8 flags(0) | Int64 commit LSN | Int64 end LSN |
//   Int64 time | Int32 xid | String gid r Rollback Prep.  Int8 flags(0) | Int64 prepare end LSN |
//   Int64 rollback end LSN |
//                     Int64 prepare time | Int64 rollback time | Int32 xid | String gid
//   p Stream Prepare  as Prepare                                                          (v3+)
// TupleData: Int16 ncols | ncols x ('n' | 'u' | 't' Int32 len Byte[len] | 'b' Int32 len Byte[len])
#pragma once

#include <cstddef>
#include <span>

#include "authsync/pgoutput/messages.hpp"

namespace authsync::pgoutput {

struct DecoderOptions {
    int proto_version = 1;            // 1 to 4
    bool streaming_parallel = false;  // streaming = parallel (v4): Stream Abort carries LSN+time
};

class Decoder {
public:
    explicit Decoder(DecoderOptions options = {});

    // Decodes one whole message. Throws ProtocolError when the bytes are not exactly one valid
    // message of the negotiated protocol.
    Message decode(std::span<const std::byte> bytes);

    bool in_stream() const { return in_stream_; }
    // Forget stream state (a new connection starts outside any stream).
    void reset() { in_stream_ = false; }
    const DecoderOptions& options() const { return options_; }

private:
    DecoderOptions options_;
    bool in_stream_ = false;
};

}  // namespace authsync::pgoutput
