// Config: authsync's YAML configuration, parsed and validated.
//
// Every error is a ConfigError naming the file, line and column (`authsync.yaml:12:5: ...`):
// syntax errors, unknown keys, wrong types, missing required keys, invalid values. `${VAR}` in
// any string value expands from the environment; an unset variable is an error. Pure apart
// from reading the file: the environment is passed in.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "authsync/mapping/composite.hpp"
#include "authsync/mapping/rule.hpp"

namespace authsync::config {

// What to do when authsync creates the slot: copy the existing rows first (initial), or only
// stream what changes from then on (never).
enum class Snapshot { Initial, Never };
// A slot that is lost (WAL removed) or gone while a checkpoint exists: stop with an error that
// says to run `authsync resync`, or resync by itself.
enum class OnSlotLost { Stop, Resync };

struct SourceConfig {
    std::string dsn;                // required
    std::string slot = "authsync";  // a valid replication slot name: [a-z0-9_]{1,63}
    std::string publication = "authsync";
    bool create_slot = true;
    bool create_publication = true;
    std::chrono::milliseconds status_interval{10'000};     // standby status update period
    std::chrono::milliseconds heartbeat_interval{10'000};  // 0 disables heartbeats
    Snapshot snapshot = Snapshot::Initial;
    OnSlotLost on_slot_lost = OnSlotLost::Stop;
};

struct TargetConfig {
    std::string dsn;  // required
};

// One target database and what is written into it. The `target:` + `mappings:` form is one
// named "default"; the `targets:` form lists them (fan-out: one slot, one decode, many
// targets).
struct NamedTarget {
    std::string name;  // [a-z0-9][a-z0-9_-]{0,62}, unique in the config
    TargetConfig target;
    std::vector<mapping::MappingRule> mappings;
    std::vector<mapping::CompositeRule> composites;
    std::string location;  // `file:line:column` of its entry, for messages
};

// The name of the one target of the `target:` form.
inline constexpr const char* kDefaultTargetName = "default";

// The endpoint over TLS (status.tls): PEM files, read at start.
struct StatusTlsConfig {
    std::string certificate;  // the server's certificate chain
    std::string key;          // its private key
};

struct StatusConfig {
    std::string listen = "127.0.0.1:8080";  // host:port; "" disables the endpoint
    std::optional<std::string> token;       // bearer token for all but /healthz
    double max_ready_lag_seconds = 60;      // /readyz fails above this lag
    // Connections served at once; one more is closed as soon as it is accepted, so that a
    // flood cannot take the descriptors the database connections need.
    std::size_t max_connections = 64;
    std::optional<StatusTlsConfig> tls;  // unset: plain HTTP
};

enum class OnError { Stop, DeadLetter };

struct ApplyConfig {
    std::size_t batch_max_rows = 10'000;             // rows per batch (see must_flush_chunk)
    std::size_t batch_max_bytes = 16u << 20;         // bytes of decoded changes per batch
    std::chrono::milliseconds batch_max_delay{200};  // longest a batch waits for more data
    OnError on_error = OnError::Stop;
    // Whether a target COMMIT waits for its WAL flush. Off by default, as for PostgreSQL's
    // own subscriptions: the provider is told `flush` only once the target's WAL is flushed
    // past the batch, so a target crash loses nothing that the slot does not still hold.
    bool synchronous_commit = false;
    // Writers into the target, each with its own connection and checkpoint row; every change
    // to one users_sync id goes to the same lane (docs/ARCHITECTURE.md, "Apply lanes").
    std::size_t lanes = 1;
};

// The most apply lanes a config may ask for.
inline constexpr std::size_t kMaxLanes = 32;

struct ReconnectConfig {
    std::chrono::milliseconds initial_backoff{500};
    std::chrono::milliseconds max_backoff{30'000};
};

// Fan-out: how long one failing target may hold the others back. Unset (the default): never
// detached; every target waits for the one that fails, as with one target.
struct FanoutConfig {
    // A target whose database has failed for this long, or whose checkpoint is this many bytes
    // of the provider's WAL behind, is detached: the others stream on without it, and it is
    // copied again and re-attached once its server answers. A target that refuses a change
    // for good (a constraint, a permission) fails at once instead, until a reload.
    std::optional<std::chrono::seconds> max_target_lag_seconds;
    std::optional<std::size_t> max_target_lag_bytes;
    bool detaches() const { return max_target_lag_seconds || max_target_lag_bytes; }
};

// Between the decode and the targets (issue 17): in this process (the default), or through a
// NATS JetStream stream, so that sinks on other machines apply each target's changes
// (`authsync run` then publishes; `authsync sink --target NAME` applies one target).
enum class TransportKind { InProcess, Nats };

struct TransportConfig {
    TransportKind kind = TransportKind::InProcess;
    // nats://host:port or tls://host:port; credentials are not taken here (no secrets in a
    // URL that would be logged).
    std::vector<std::string> servers;
    std::string stream = "AUTHSYNC";          // [A-Za-z0-9_-], at most 64
    std::string subject_prefix = "authsync";  // subjects: <prefix>.<slot>.<target>
    int replicas = 1;                         // default 3 with 3 servers or more
    std::optional<std::int64_t> max_bytes;    // the stream's limits (retention)
    std::optional<std::chrono::seconds> max_age;
    std::chrono::seconds duplicate_window{120};  // JetStream's deduplication of message ids
    // A sink's delivered frames unacknowledged this long are delivered again.
    std::chrono::seconds ack_wait{30};
    bool nats() const { return kind == TransportKind::Nats; }
};

struct Config {
    std::string path;  // the file it came from, for messages
    SourceConfig source;
    // The target this config is for, and what goes into it: the one of the `target:` form, or
    // targets[0] of the `targets:` form (for_target() gives any other's). At least one mapping
    // in all: single-table rules, and composite ones from presets (`- preset: NAME`), read from
    // NAME.yaml in presets_directory().
    TargetConfig target;
    std::vector<mapping::MappingRule> mappings;
    std::vector<mapping::CompositeRule> composites;
    // Every target, in config order; at least one. The `target:` form gives one, named
    // "default", with the same dsn and mappings as the fields above.
    std::vector<NamedTarget> targets;
    StatusConfig status;
    ApplyConfig apply;
    ReconnectConfig reconnect;
    FanoutConfig fanout;
    TransportConfig transport;
    std::string presets_dir;  // "" unless configured

    // This config for targets[i] alone: `target`, `mappings` and `composites` are that
    // target's, and `targets` holds just it.
    Config for_target(std::size_t i) const;
    // This config for the targets `keep` says yes to, in config order (at least one): the
    // top-level target fields become the first kept one's.
    Config with_targets(const std::function<bool(const NamedTarget&)>& keep) const;
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The one directory `preset: NAME` is read from. Presets are SQL that runs in the target, so
// they come only from where the operator put them, never from the working directory or from
// beside the config file: the first of
//   1. `presets_dir` in the config, when set;
//   2. $AUTHSYNC_PRESETS_DIR, when set and not empty;
//   3. the source tree's conf/presets, only when `executable` lies inside the build directory
//      it was built in (an uninstalled binary, as the tests and a developer run it);
//   4. the installed presets, <prefix>/<datadir>/authsync/presets (`meson install`).
std::string presets_directory(const std::string& presets_dir, const EnvLookup& env,
                              const std::string& executable);
// The running program's path (/proc/self/exe), or "" when it cannot be read.
std::string running_executable();

// The process environment.
EnvLookup process_env();

// Parses YAML text; `name` is used in messages as the file name.
Config parse_config(std::string_view yaml, const std::string& name, const EnvLookup& env);
// Reads and parses a file. A missing or unreadable file is a ConfigError too.
Config load_config(const std::string& path, const EnvLookup& env);

}  // namespace authsync::config
