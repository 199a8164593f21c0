#include "authsync/core/byte_reader.hpp"

#include <fmt/format.h>

#include "authsync/core/error.hpp"

namespace authsync {

void ByteReader::fail_at(std::size_t offset, const std::string& message) const {
    throw ProtocolError(fmt::format("malformed {}: {} at offset {}", what_, message, offset));
}

void ByteReader::fail(const std::string& message) const {
    fail_at(pos_, message);
}

void ByteReader::need(std::size_t n, const char* field) const {
    if (remaining() < n) {
        fail(fmt::format("insufficient data for {} (need {} bytes, {} left)", field, n,
                         remaining()));
    }
}

std::uint8_t ByteReader::read_u8() {
    need(1, "Int8");
    return std::to_integer<std::uint8_t>(bytes_[pos_++]);
}

std::int16_t ByteReader::read_i16() {
    need(2, "Int16");
    std::uint16_t v = static_cast<std::uint16_t>((std::to_integer<unsigned>(bytes_[pos_]) << 8) |
                                                 std::to_integer<unsigned>(bytes_[pos_ + 1]));
    pos_ += 2;
    return static_cast<std::int16_t>(v);
}

std::uint32_t ByteReader::read_u32() {
    need(4, "Int32");
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | std::to_integer<std::uint32_t>(bytes_[pos_ + i]);
    pos_ += 4;
    return v;
}

std::int32_t ByteReader::read_i32() {
    return static_cast<std::int32_t>(read_u32());
}

std::uint64_t ByteReader::read_u64() {
    need(8, "Int64");
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(bytes_[pos_ + i]);
    pos_ += 8;
    return v;
}

std::int64_t ByteReader::read_i64() {
    return static_cast<std::int64_t>(read_u64());
}

std::string ByteReader::read_cstring() {
    for (std::size_t i = pos_; i < bytes_.size(); ++i) {
        if (bytes_[i] == std::byte{0}) {
            std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), i - pos_);
            pos_ = i + 1;
            return s;
        }
    }
    fail("unterminated string");
}

std::span<const std::byte> ByteReader::read_bytes(std::size_t n) {
    need(n, "Byte[n]");
    auto out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
}

std::span<const std::byte> ByteReader::read_rest() {
    auto out = bytes_.subspan(pos_);
    pos_ = bytes_.size();
    return out;
}

void ByteReader::expect_end() const {
    if (!at_end()) fail(fmt::format("{} unexpected trailing bytes", remaining()));
}

}  // namespace authsync
