#include "authsync/transport/frame.hpp"

#include <fmt/format.h>

#include "authsync/core/byte_reader.hpp"
#include "authsync/core/error.hpp"

namespace authsync::transport {

namespace {

constexpr char kMagic[] = {'A', 'S', 'F', '\x02'};
constexpr std::size_t kHeaderSize = sizeof kMagic + 8 + 8 + 4 + 4 + 8 + 4;

void put_u32(std::string& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

void put_u64(std::string& out, std::uint64_t v) {
    put_u32(out, static_cast<std::uint32_t>(v >> 32));
    put_u32(out, static_cast<std::uint32_t>(v));
}

}  // namespace

std::string encode_frame(const Frame& frame) {
    if (frame.parts == 0 || frame.part >= frame.parts) {
        throw std::invalid_argument(
            fmt::format("frame part {} of {} is not a part", frame.part, frame.parts));
    }
    std::size_t size = kHeaderSize;
    for (const auto& m : frame.messages) size += 4 + m.size();
    std::string out;
    out.reserve(size);
    out.append(kMagic, sizeof kMagic);
    put_u64(out, frame.end_lsn.value);
    put_u64(out, frame.prev_end_lsn.value);
    put_u32(out, frame.part);
    put_u32(out, frame.parts);
    put_u64(out, frame.epoch);
    put_u32(out, static_cast<std::uint32_t>(frame.messages.size()));
    for (const auto& m : frame.messages) {
        if (m.size() > UINT32_MAX) throw std::length_error("a pgoutput message over 4 GB");
        put_u32(out, static_cast<std::uint32_t>(m.size()));
        out += m;
    }
    return out;
}

Frame decode_frame(std::span<const std::byte> bytes) {
    ByteReader r(bytes, "frame");
    const auto magic = r.read_bytes(sizeof kMagic);
    for (std::size_t i = 0; i < sizeof kMagic; ++i) {
        if (magic[i] != static_cast<std::byte>(kMagic[i])) {
            r.fail_at(0, "not an authsync frame (or a version this build does not read)");
        }
    }
    Frame f;
    f.end_lsn = Lsn(r.read_u64());
    f.prev_end_lsn = Lsn(r.read_u64());
    f.part = r.read_u32();
    f.parts = r.read_u32();
    f.epoch = r.read_u64();
    if (!f.end_lsn.is_valid()) r.fail("end_lsn is 0");
    if (f.prev_end_lsn.is_valid() && f.prev_end_lsn >= f.end_lsn) {
        r.fail(fmt::format("prev_end_lsn {} is not before end_lsn {}", f.prev_end_lsn.to_string(),
                           f.end_lsn.to_string()));
    }
    if (f.parts == 0 || f.part >= f.parts) {
        r.fail(fmt::format("part {} of {} is not a part", f.part, f.parts));
    }
    const auto count = r.read_u32();
    // Each message takes at least its 4-byte length: a count that cannot fit is refused
    // before anything is reserved for it.
    if (count > r.remaining() / 4) {
        r.fail(fmt::format("{} messages cannot fit in the {} bytes left", count, r.remaining()));
    }
    f.messages.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        const auto length = r.read_u32();
        if (length == 0) r.fail(fmt::format("message {} is empty", i));
        const auto body = r.read_bytes(length);
        f.messages.emplace_back(reinterpret_cast<const char*>(body.data()), body.size());
    }
    r.expect_end();
    return f;
}

Frame decode_frame(std::string_view bytes) {
    return decode_frame(std::as_bytes(std::span(bytes.data(), bytes.size())));
}

std::string frame_message_id(std::string_view slot, std::string_view target, const Frame& frame) {
    return fmt::format("{}/{}/{}/{}/{:x}", slot, target, frame.end_lsn.to_string(), frame.part,
                       frame.epoch);
}

std::string mark_message_id(std::string_view slot, std::string_view target, const Frame& mark,
                            std::uint64_t sequence) {
    return fmt::format("{}/{}/mark/{}/{:x}/{}", slot, target, mark.end_lsn.to_string(), mark.epoch,
                       sequence);
}

std::string frame_subject(std::string_view prefix, std::string_view slot, std::string_view target) {
    // The prefix may have tokens of its own ("acme.authsync"); the slot and target are one each.
    const auto bad = [](std::string_view token, std::string_view reserved) {
        return token.empty() || token.find_first_of(reserved) != std::string_view::npos;
    };
    if (bad(prefix, " \t\r\n*>") || prefix.front() == '.' || prefix.back() == '.' ||
        prefix.find("..") != std::string_view::npos) {
        throw ConfigError(fmt::format(
            "'{}' is not a NATS subject prefix (empty tokens, a space, '*' or '>')", prefix));
    }
    for (auto token : {slot, target}) {
        if (bad(token, " \t\r\n.*>")) {
            throw ConfigError(fmt::format(
                "'{}' cannot be a NATS subject token (empty, or a space, '.', '*' or '>')", token));
        }
    }
    return fmt::format("{}.{}.{}", prefix, slot, target);
}

}  // namespace authsync::transport
