// ByteReader: a bounds-checked, big-endian reader over untrusted bytes.
//
// Every read checks what is left and throws ProtocolError naming what was being read (the
// message type given at construction) and the offset; nothing is ever read past the end, in any
// build type. The reader does not own the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace authsync {

class ByteReader {
public:
    ByteReader(std::span<const std::byte> bytes, std::string_view what)
        : bytes_(bytes), what_(what) {}

    std::uint8_t read_u8();
    std::int16_t read_i16();
    std::int32_t read_i32();
    std::uint32_t read_u32();
    std::int64_t read_i64();
    std::uint64_t read_u64();
    // A NUL-terminated string; throws when no NUL is found before the end.
    std::string read_cstring();
    // Exactly n bytes.
    std::span<const std::byte> read_bytes(std::size_t n);
    // Everything not read yet.
    std::span<const std::byte> read_rest();

    std::size_t offset() const { return pos_; }
    std::size_t remaining() const { return bytes_.size() - pos_; }
    bool at_end() const { return pos_ == bytes_.size(); }
    std::string_view what() const { return what_; }

    // Throws ProtocolError unless every byte was consumed.
    void expect_end() const;
    [[noreturn]] void fail(const std::string& message) const;
    [[noreturn]] void fail_at(std::size_t offset, const std::string& message) const;

private:
    void need(std::size_t n, const char* field) const;

    std::span<const std::byte> bytes_;
    std::size_t pos_ = 0;
    std::string_view what_;
};

}  // namespace authsync
