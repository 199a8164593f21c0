// libFuzzer target for the pgoutput decoder, the relation cache and the JSON view.
//
// Input: byte 0 picks the options (bits 0-1: protocol version - 1, bit 2: streaming=parallel,
// bit 3: messages are CopyData frames); then a sequence of messages, each preceded by a
// big-endian 16-bit length, so that a Relation followed by DML on it can be reached.
// scripts/fuzz builds the seed corpus from the captured fixtures in this format.
// The only acceptable failure is ProtocolError.
#include <cstddef>
#include <cstdint>

#include "authsync/core/error.hpp"
#include "authsync/pgoutput/decoder.hpp"
#include "authsync/pgoutput/json.hpp"
#include "authsync/pgoutput/relation_cache.hpp"
#include "authsync/wire/replication_message.hpp"

using namespace authsync;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t selector = data[0];
    pgoutput::DecoderOptions options;
    options.proto_version = 1 + (selector & 3);
    options.streaming_parallel = (selector & 4) != 0;
    const bool frames = (selector & 8) != 0;
    pgoutput::Decoder decoder(options);
    pgoutput::RelationCache cache;

    std::size_t pos = 1;
    while (pos + 2 <= size) {
        std::size_t len = (static_cast<std::size_t>(data[pos]) << 8) | data[pos + 1];
        pos += 2;
        if (len > size - pos) len = size - pos;
        std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data + pos), len);
        pos += len;
        try {
            if (frames) {
                auto frame = wire::decode_server_message(bytes);
                auto* x = std::get_if<wire::XLogData>(&frame);
                if (x == nullptr) continue;
                bytes = x->payload;
            }
            auto message = decoder.decode(bytes);
            if (auto* rel = std::get_if<pgoutput::Relation>(&message)) cache.apply(*rel);
            if (auto* type = std::get_if<pgoutput::Type>(&message)) cache.apply(*type);
            (void)pgoutput::to_json(message, cache)
                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        } catch (const ProtocolError&) {
        }
    }
    return 0;
}
