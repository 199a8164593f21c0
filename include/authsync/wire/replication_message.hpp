// Framing of the streaming replication protocol inside CopyData (the COPY BOTH sub-protocol
// that START_REPLICATION enters).
//
// From the server:
//   'w' XLogData           Int64 start LSN | Int64 current WAL end | Int64 send time | Byte[n]
//   payload 'k' Primary keepalive  Int64 WAL end   | Int64 send time       | Byte1 reply requested
// From the client:
//   'r' Standby status     Int64 write | Int64 flush | Int64 apply | Int64 send time | Byte1 reply
// Times are microseconds since 2000-01-01 UTC. Pure: decodes and encodes bytes, no I/O. The
// XLogData payload is a view into the caller's buffer.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <variant>

#include "authsync/core/lsn.hpp"
#include "authsync/core/pg_time.hpp"

namespace authsync::wire {

struct XLogData {
    Lsn start;
    Lsn wal_end;
    PgTimestamp send_time;
    std::span<const std::byte> payload;
};

struct PrimaryKeepalive {
    Lsn wal_end;
    PgTimestamp send_time;
    bool reply_requested = false;
};

struct StandbyStatusUpdate {
    Lsn write;
    Lsn flush;
    Lsn apply;
    PgTimestamp send_time;
    bool reply_requested = false;

    bool operator==(const StandbyStatusUpdate&) const = default;
};

using ServerMessage = std::variant<XLogData, PrimaryKeepalive>;

inline constexpr std::size_t kStandbyStatusUpdateSize = 1 + 8 * 4 + 1;

// Decodes one CopyData payload sent by the server. Throws ProtocolError on anything malformed.
ServerMessage decode_server_message(std::span<const std::byte> copy_data);

std::array<std::byte, kStandbyStatusUpdateSize> encode_standby_status_update(
    const StandbyStatusUpdate& update);
// The inverse of encode, for tests and tools. Throws ProtocolError on anything malformed.
StandbyStatusUpdate decode_standby_status_update(std::span<const std::byte> copy_data);

}  // namespace authsync::wire
