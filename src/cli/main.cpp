// authsync's entry point: parses the command line and hands each subcommand to its module.
#include <CLI/CLI.hpp>
#include <iostream>

#include "authsync/cli/decode_command.hpp"
#include "authsync/version.hpp"

int main(int argc, char** argv) {
    CLI::App app{"authsync: keeps neon_auth.users_sync in sync with an auth provider's database"};
    app.set_version_flag("--version", std::string("authsync ") + authsync::kVersion);
    app.require_subcommand(1);

    authsync::cli::DecodeOptions decode;
    auto* decode_cmd = app.add_subcommand(
        "decode",
        "Decode pgoutput messages given as hex, one per line on stdin (the data column of "
        "pg_logical_slot_peek_binary_changes), and print one JSON object per message");
    decode_cmd->add_option("--proto-version", decode.decoder.proto_version,
                           "pgoutput protocol version the messages were produced with")
        ->check(CLI::Range(1, 4))
        ->capture_default_str();
    decode_cmd->add_flag("--streaming-parallel", decode.decoder.streaming_parallel,
                         "messages were produced with streaming = parallel (protocol 4)");
    decode_cmd->add_flag("--copydata", decode.copydata,
                         "lines are whole CopyData frames of the streaming protocol ('w'/'k')");

    CLI11_PARSE(app, argc, argv);

    if (decode_cmd->parsed()) {
        return authsync::cli::run_decode(std::cin, std::cout, std::cerr, decode);
    }
    return 0;
}
