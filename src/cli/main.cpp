// authsync's entry point: parses the command line and hands each subcommand to its module.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "authsync/cli/commands.hpp"
#include "authsync/cli/decode_command.hpp"
#include "authsync/version.hpp"

int main(int argc, char** argv) {
    // Each batch allocates and frees buffers of megabytes (its array parameters, libpq's copy
    // of them): keep them in the heap for the next batch instead of mapping, unmapping and
    // page-faulting them every time (a tenth of the reader's CPU while draining, perf).
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    CLI::App app{"authsync: keeps neon_auth.users_sync in sync with an auth provider's database"};
    app.set_version_flag("--version", std::string("authsync ") + authsync::kVersion);
    app.require_subcommand(1);
    std::string log_level = "info";
    app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
        ->capture_default_str();
    std::string log_format = "text";
    app.add_option("--log-format", log_format,
                   "text, or json: one object per line with time, level, logger, message and "
                   "the message's key=value fields")
        ->check(CLI::IsMember({"text", "json"}))
        ->capture_default_str();

    std::string config_path = "conf/authsync.yaml";
    auto add_config = [&](CLI::App* cmd) {
        cmd->add_option("-c,--config", config_path, "YAML configuration file")
            ->capture_default_str();
    };
    auto* run = app.add_subcommand("run",
                                   "Stream the provider's slot into the target until "
                                   "SIGTERM/SIGINT");
    add_config(run);
    std::vector<std::string> sink_targets;
    std::string sink_listen;
    auto* sink = app.add_subcommand(
        "sink",
        "Apply one target from the JetStream stream (transport.kind: nats) until "
        "SIGTERM/SIGINT; `run` publishes to it");
    add_config(sink);
    sink->add_option("--target", sink_targets,
                     "a target's name in the config (repeat it for a sink of several)")
        ->required();
    sink->add_option("--listen", sink_listen,
                     "host:port of this sink's status endpoint (default: none)");
    auto* check = app.add_subcommand(
        "check", "Validate the config and both connections; report every problem with a hint");
    add_config(check);
    auto* init = app.add_subcommand(
        "init", "Create what is missing (publication, slot, target schema) and exit");
    add_config(init);
    auto* resync = app.add_subcommand(
        "resync",
        "Rebuild: drop and re-create the slot, copy every user again, reconcile the "
        "target; then exit (after a lost slot or a mapping change)");
    add_config(resync);
    auto* teardown = app.add_subcommand(
        "teardown", "Drop the slot and publication; leave users_sync and its data in place");
    add_config(teardown);

    std::string dead_letter_action;
    auto* dead_letter = app.add_subcommand(
        "dead-letter",
        "List or retry the changes the target rejected (apply.on_error: dead_letter)");
    add_config(dead_letter);
    dead_letter->add_option("action", dead_letter_action, "list or retry")
        ->required()
        ->check(CLI::IsMember({"list", "retry"}));

    // Bounded by default: the whole backlog would sit in memory twice, in the provider's
    // result and in ours.
    int peek_limit = 1000;
    auto* peek = app.add_subcommand(
        "peek", "Show the changes pending in the slot, decoded, without consuming them");
    add_config(peek);
    peek->add_option("--limit", peek_limit,
                     "stop after the transaction holding the Nth change (default: 1000; 0: all, "
                     "the whole backlog in memory)")
        ->check(CLI::NonNegativeNumber);

    std::string status_url = "http://127.0.0.1:8080";
    bool status_json = false;
    auto* status = app.add_subcommand(
        "status",
        "Summarize a running authsync's status endpoint (exit 0 ready, 1 lagging or "
        "failed, 2 unreachable)");
    status->add_option("--url", status_url, "the status endpoint")->capture_default_str();
    status->add_flag("--json", status_json, "print the endpoint's JSON");
    std::string status_cacert;
    status->add_option("--cacert", status_cacert,
                       "for https: the CA certificate (PEM) that signed the endpoint's "
                       "certificate (default: the system's CAs)");

    std::string targets_url = "http://127.0.0.1:8080";
    auto* targets = app.add_subcommand(
        "targets",
        "List a running authsync's targets from its status endpoint, worst lag first (exit 0 "
        "all streaming, 1 otherwise, 2 unreachable)");
    targets->add_option("--url", targets_url, "the status endpoint")->capture_default_str();
    std::string targets_cacert;
    targets->add_option("--cacert", targets_cacert,
                        "for https: the CA certificate (PEM) that signed the endpoint's "
                        "certificate (default: the system's CAs)");

    authsync::cli::DecodeOptions decode;
    auto* decode_cmd = app.add_subcommand(
        "decode",
        "Decode pgoutput messages given as hex, one per line on stdin (the data column of "
        "pg_logical_slot_peek_binary_changes), and print one JSON object per message");
    decode_cmd
        ->add_option("--proto-version", decode.decoder.proto_version,
                     "pgoutput protocol version the messages were produced with")
        ->check(CLI::Range(1, 4))
        ->capture_default_str();
    decode_cmd->add_flag("--streaming-parallel", decode.decoder.streaming_parallel,
                         "messages were produced with streaming = parallel (protocol 4)");
    decode_cmd->add_flag("--copydata", decode.copydata,
                         "lines are whole CopyData frames of the streaming protocol ('w'/'k')");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version end here with 0; wrong usage is exit code 2 (README), not
        // CLI11's own numbers.
        return app.exit(e) == 0 ? 0 : 2;
    }
    authsync::cli::setup_logging(log_level, log_format == "json" ? authsync::cli::LogFormat::Json
                                                                 : authsync::cli::LogFormat::Text);

    if (decode_cmd->parsed()) {
        return authsync::cli::run_decode(std::cin, std::cout, std::cerr, decode);
    }
    if (run->parsed()) return authsync::cli::run_command(config_path);
    if (sink->parsed()) return authsync::cli::sink_command(config_path, sink_targets, sink_listen);
    if (check->parsed()) return authsync::cli::check_command(config_path);
    if (init->parsed()) return authsync::cli::init_command(config_path);
    if (teardown->parsed()) return authsync::cli::teardown_command(config_path);
    if (resync->parsed()) return authsync::cli::resync_command(config_path);
    if (dead_letter->parsed()) {
        return authsync::cli::dead_letter_command(config_path, dead_letter_action);
    }
    if (peek->parsed()) return authsync::cli::peek_command(config_path, peek_limit);
    if (status->parsed())
        return authsync::cli::status_command(status_url, status_json, status_cacert);
    if (targets->parsed()) return authsync::cli::targets_command(targets_url, targets_cacert);
    return 2;
}
