#include "authsync/cli/decode_command.hpp"

#include <istream>
#include <ostream>
#include <string>

#include "authsync/core/ascii.hpp"
#include "authsync/core/error.hpp"
#include "authsync/core/hex.hpp"
#include "authsync/pgoutput/json.hpp"
#include "authsync/wire/replication_message.hpp"

namespace authsync::cli {

namespace {

using nlohmann::json;

json decode_pgoutput(pgoutput::Decoder& decoder, pgoutput::RelationCache& relations,
                     std::span<const std::byte> bytes) {
    auto message = decoder.decode(bytes);
    if (auto* rel = std::get_if<pgoutput::Relation>(&message)) relations.apply(*rel);
    if (auto* type = std::get_if<pgoutput::Type>(&message)) relations.apply(*type);
    return pgoutput::to_json(message, relations);
}

}  // namespace

int run_decode(std::istream& in, std::ostream& out, std::ostream& err,
               const DecodeOptions& options) {
    pgoutput::Decoder decoder(options.decoder);
    pgoutput::RelationCache relations;
    std::string line;
    std::size_t line_no = 0;
    while (std::getline(in, line)) {
        ++line_no;
        // Spaces, tabs and a CRLF file's carriage returns around the digits.
        auto text = trim(line, " \t\r");
        if (text.empty()) continue;
        try {
            auto bytes = hex_decode(text);
            json j;
            if (options.copydata) {
                auto frame = wire::decode_server_message(bytes);
                if (auto* x = std::get_if<wire::XLogData>(&frame)) {
                    j = {{"frame", "XLogData"},
                         {"start_lsn", x->start.to_string()},
                         {"wal_end", x->wal_end.to_string()},
                         {"send_time", x->send_time.to_iso8601()},
                         {"message", decode_pgoutput(decoder, relations, x->payload)}};
                } else {
                    const auto& k = std::get<wire::PrimaryKeepalive>(frame);
                    j = {{"frame", "Keepalive"},
                         {"wal_end", k.wal_end.to_string()},
                         {"send_time", k.send_time.to_iso8601()},
                         {"reply_requested", k.reply_requested}};
                }
            } else {
                j = decode_pgoutput(decoder, relations, bytes);
            }
            out << j.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
        } catch (const Error& e) {
            out.flush();
            err << "authsync decode: line " << line_no << ": " << e.what() << '\n';
            return 1;
        }
    }
    return 0;
}

}  // namespace authsync::cli
