#include "authsync/wire/replication_message.hpp"

#include <fmt/format.h>

#include "authsync/core/byte_reader.hpp"
#include "authsync/core/error.hpp"

namespace authsync::wire {

namespace {

bool read_bool_byte(ByteReader& r, const char* field) {
    auto v = r.read_u8();
    if (v > 1) r.fail_at(r.offset() - 1, fmt::format("{} must be 0 or 1, got {}", field, v));
    return v == 1;
}

void put_u64(std::byte* out, std::uint64_t v) {
    for (int i = 7; i >= 0; --i) {
        out[i] = static_cast<std::byte>(v & 0xff);
        v >>= 8;
    }
}

}  // namespace

ServerMessage decode_server_message(std::span<const std::byte> copy_data) {
    if (copy_data.empty()) throw ProtocolError("malformed CopyData: empty message");
    const auto kind = std::to_integer<char>(copy_data[0]);
    if (kind == 'w') {
        ByteReader r(copy_data, "XLogData message");
        r.read_u8();
        XLogData d;
        d.start = Lsn{r.read_u64()};
        d.wal_end = Lsn{r.read_u64()};
        d.send_time = PgTimestamp{r.read_i64()};
        d.payload = r.read_rest();
        if (d.payload.empty()) r.fail("empty XLogData payload");
        return d;
    }
    if (kind == 'k') {
        ByteReader r(copy_data, "primary keepalive message");
        r.read_u8();
        PrimaryKeepalive k;
        k.wal_end = Lsn{r.read_u64()};
        k.send_time = PgTimestamp{r.read_i64()};
        k.reply_requested = read_bool_byte(r, "reply requested");
        r.expect_end();
        return k;
    }
    throw ProtocolError(
        fmt::format("malformed CopyData: unknown replication message type 0x{:02x} at offset 0",
                    static_cast<unsigned>(std::to_integer<unsigned char>(copy_data[0]))));
}

std::array<std::byte, kStandbyStatusUpdateSize> encode_standby_status_update(
    const StandbyStatusUpdate& u) {
    std::array<std::byte, kStandbyStatusUpdateSize> out{};
    out[0] = std::byte{'r'};
    put_u64(&out[1], u.write.value);
    put_u64(&out[9], u.flush.value);
    put_u64(&out[17], u.apply.value);
    put_u64(&out[25], static_cast<std::uint64_t>(u.send_time.micros));
    out[33] = std::byte{static_cast<unsigned char>(u.reply_requested ? 1 : 0)};
    return out;
}

StandbyStatusUpdate decode_standby_status_update(std::span<const std::byte> copy_data) {
    ByteReader r(copy_data, "standby status update");
    if (r.read_u8() != 'r') r.fail_at(0, "expected message type 'r'");
    StandbyStatusUpdate u;
    u.write = Lsn{r.read_u64()};
    u.flush = Lsn{r.read_u64()};
    u.apply = Lsn{r.read_u64()};
    u.send_time = PgTimestamp{r.read_i64()};
    u.reply_requested = read_bool_byte(r, "reply requested");
    r.expect_end();
    return u;
}

}  // namespace authsync::wire
