// Frame: what the source role publishes to a target's JetStream subject, and the sink reads.
//
// One frame is one or more whole source transactions as that target sees them: their pgoutput
// messages, byte for byte as the walsender sent them (Begin, the Relation messages of the
// tables it touches, the changes that route to the target, Commit), so that the sink decodes,
// routes and applies them with the same decoder, router and writers as the in-process engine.
// `end_lsn` is the last transaction's. A frame too large for one message is split into parts
// (`part` of `parts`), published in order; the sink applies a frame once it holds every part.
// `epoch` names the source session that published it: parts of one frame share it, so that a
// part left by a source that died mid-frame is never completed by another session's parts.
// `prev_end_lsn` is the end_lsn of the frame published to the same subject before this one (for the
// first: the position from which the source covers that target), so that a sink finds a gap (frames
// lost to the stream's retention) instead of applying across it.
//
// A mark is a frame without messages (FrameBuilder::mark): `prev_end_lsn` is the subject's
// chain, `end_lsn` how far the source has covered the target with nothing more for it. The
// source publishes one to a subject idle for a while, so that retention never empties it: a
// sink away for longer than retention then still finds a gap (a mark whose predecessor is past
// its checkpoint). A sink takes it as a frame that applies nothing; it is not a link of the
// chain (the next frame names the last one with changes).
//
// Layout, big-endian: "ASF" 0x02 | u64 end_lsn | u64 prev_end_lsn | u32 part | u32 parts |
// u64 epoch | u32 count | count x (u32 length | length bytes). Decoding checks every length against
// what is left and throws ProtocolError on anything malformed (it never reads past the end). Pure:
// no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "authsync/core/lsn.hpp"

namespace authsync::transport {

struct Frame {
    Lsn end_lsn;       // the source transaction's Commit end_lsn
    Lsn prev_end_lsn;  // of the previous frame on the subject (see above)
    std::uint32_t part = 0;
    std::uint32_t parts = 1;
    std::uint64_t epoch = 0;
    std::vector<std::string> messages;  // pgoutput messages, as received
};

std::string encode_frame(const Frame& frame);
Frame decode_frame(std::span<const std::byte> bytes);
Frame decode_frame(std::string_view bytes);

// The JetStream message id of a frame (deduplication): the same frame published again by its
// session (a publish retried after a lost acknowledgement) is stored once.
std::string frame_message_id(std::string_view slot, std::string_view target, const Frame& frame);
// A mark's (one per publish, `sequence` counting them in the session): never taken for another.
std::string mark_message_id(std::string_view slot, std::string_view target, const Frame& mark,
                            std::uint64_t sequence);

// The subject of a target's frames: `<prefix>.<slot>.<target>`. Throws ConfigError for what
// NATS cannot take: a space, '*' or '>' anywhere, an empty token, a '.' in the slot or target.
std::string frame_subject(std::string_view prefix, std::string_view slot, std::string_view target);

}  // namespace authsync::transport
