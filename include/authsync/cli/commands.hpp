// The subcommands that talk to databases: run, check, init, teardown.
//
// Each returns the process exit code (see README: 0 success, 1 failure or problems found,
// 2 usage errors are CLI11's).
#pragma once

#include <string>
#include <vector>

#include "authsync/cli/log_format.hpp"
#include "authsync/config/config.hpp"
#include "authsync/engine/engine.hpp"

namespace authsync::cli {

// Every target's DSN parses, and no two targets name the same database (their checkpoints and
// users_sync would be one); else ConfigError naming both targets and where they are.
void check_targets(const config::Config& config);

int run_command(const std::string& config_path);
// `authsync sink --target NAME...`: applies those targets from the JetStream stream
// (transport.kind: nats) until SIGTERM, each with a supervisor of its own on one event loop;
// its status endpoint (all of them together) listens on `listen` ("" for none).
int sink_command(const std::string& config_path, const std::vector<std::string>& targets,
                 const std::string& listen);
// Drops and re-creates the slot, copies every user again and reconciles the target (users no
// longer on the provider are soft-deleted, or removed under on_delete: hard); then exits.
int resync_command(const std::string& config_path);
int check_command(const std::string& config_path);
int init_command(const std::string& config_path);
int teardown_command(const std::string& config_path);
// `dead-letter list` shows the changes the target rejected (key and error, never the payload);
// `dead-letter retry` applies each again and removes those that now succeed (exit 1 while any
// still fails).
int dead_letter_command(const std::string& config_path, const std::string& action);
// Prints the changes pending in the slot, decoded as JSON, without consuming them.
int peek_command(const std::string& config_path, int limit);
// Reads the status endpoint of a running authsync. Exit 0 when streaming and ready, 1 when
// lagging or failed, 2 when the endpoint cannot be read. AUTHSYNC_STATUS_TOKEN, when set, is
// sent as the bearer token.
int status_command(const std::string& url, bool json, const std::string& cacert = "");
// `authsync targets`: the targets of a running authsync (its /status), worst lag first.
int targets_command(const std::string& url, const std::string& cacert);

struct SinkRun {
    std::vector<std::string> targets;
    std::string listen;
};
// The engine with the status endpoint (when serve_status and configured), until it stops; a
// sink of one target when `sink` is given.
int run_engine(const std::string& config_path, engine::SessionOptions options, bool serve_status,
               const SinkRun* sink = nullptr);

// Sets up spdlog: lines to stderr at the given level (trace|debug|info|warn|error), as text or
// one JSON object per line.
void setup_logging(const std::string& level, LogFormat format = LogFormat::Text);

}  // namespace authsync::cli
