// Provisioning: what authsync needs on both sides, checked and created.
//
// Source: the publication for the mapped tables and the logical slot (plugin pgoutput).
// Target: neon_auth.users_sync exactly as Neon Auth defines it (and any other mapped target
// table with the same shape), and authsync's own state in the `authsync` schema.
// Used by `run` (creates what is missing when allowed), `init`, `teardown` and `check`.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "authsync/config/config.hpp"
#include "authsync/core/error.hpp"
#include "authsync/core/lsn.hpp"
#include "authsync/pg/async_connection.hpp"

namespace authsync::engine {

namespace asio = boost::asio;

// A permanent failure that is none of the typed ones (e.g. a lost slot).
class FatalError : public Error {
public:
    using Error::Error;
};

// A composite mapping's lookup did not find exactly one value.
class LookupError : public Error {
public:
    using Error::Error;
};

// DDL for a users_sync-shaped table.
std::string users_sync_ddl(const std::string& schema, const std::string& table);
// DDL for the authsync schema (checkpoint table).
std::string state_ddl();

struct SlotInfo {
    std::string plugin;
    std::string database;
    bool active = false;
    std::optional<std::string> wal_status;
    std::optional<Lsn> confirmed_flush;
};

asio::awaitable<std::optional<SlotInfo>> find_slot(pg::AsyncConnection& source,
                                                   const std::string& slot);
asio::awaitable<bool> publication_exists(pg::AsyncConnection& source, const std::string& name);
// Creates the publication for the config's tables, each with a column list of what authsync
// reads of it plus its replica identity (PostgreSQL 15), so that secrets beside the mapped
// columns stay on the provider; composite sources also get, where the provider's replica
// identity allows it, their row filters. A table mapping's table with REPLICA IDENTITY FULL is
// published whole (a list would have to name every column); a preset's is refused. Returns a
// note for each table published whole or without its row filter (the caller logs them).
asio::awaitable<std::vector<std::string>> create_publication(pg::AsyncConnection& source,
                                                             const config::Config& config);
// The publication, checked against the config (a scope or table it lacks is a FatalError),
// and created when missing and allowed (source.create_publication). Shared by the in-process
// engine and the source role.
asio::awaitable<void> ensure_publication(pg::AsyncConnection& source, const config::Config& config);
asio::awaitable<void> create_slot(pg::AsyncConnection& source, const std::string& slot);

// Runs the lookups of composite mappings on the provider and fills their values into the row
// filters. Throws LookupError when a lookup finds no
// row or several: e.g. no Stack tenancy for the configured project.
asio::awaitable<void> resolve_lookups(pg::AsyncConnection& source, config::Config& config);
// Connects to the provider as `application_name`, then resolves the lookups there, as a
// session starts: a lookup that finds nothing is a FatalError (reconnecting would find the same).
asio::awaitable<void> connect_and_resolve(pg::AsyncConnection& source, config::Config& config,
                                          const std::string& application_name);

// The columns of a mirrored table that exist on the provider, in the preset's order (optional
// ones may be missing).
asio::awaitable<std::vector<std::string>> existing_columns(pg::AsyncConnection& source,
                                                           const mapping::MirrorSource& s);
// Those of `names` that the provider table has, in that order, each once.
asio::awaitable<std::vector<std::string>> existing_columns(pg::AsyncConnection& source,
                                                           const std::string& schema,
                                                           const std::string& table,
                                                           const std::vector<std::string>& names);
// The columns a table mapping reads: its key columns, then its fields' columns, each once.
std::vector<std::string> mapping_columns(const mapping::MappingRule& m);

// Creates the target tables and state schema when missing.
asio::awaitable<void> ensure_target_schema(pg::AsyncConnection& target,
                                           const config::Config& config);
// Mirrors of the config's presets that are missing on the target or have other columns than
// their preset names, described; empty when all are as the presets say.
asio::awaitable<std::vector<std::string>> inspect_mirrors(pg::AsyncConnection& target,
                                                          const config::Config& config);
struct Checkpoint {
    Lsn end_lsn;
    // Written by a version that records every position it acknowledges to the provider in
    // the checkpoint first (idle keepalives included): the slot can then never be ahead of it
    // unless the target went back in time (a restore, a branch from an earlier point).
    bool covers_acknowledged = false;
};

// The checkpoint stored for a slot, if any: with apply lanes, the highest of its lanes' rows
// (what the slot can have been acknowledged up to).
asio::awaitable<std::optional<Checkpoint>> read_checkpoint(pg::AsyncConnection& target,
                                                           const std::string& slot);
// Every checkpoint row of the slot, by apply lane.
asio::awaitable<std::map<std::size_t, Checkpoint>> read_lane_checkpoints(
    pg::AsyncConnection& target, const std::string& slot);
// Makes the rows of lanes 1 to starts.size()-1 those of `starts` where missing (a lane that
// has committed nothing yet is at 0/0: it starts at the slot's own position), and removes the
// rows of lanes past them (after a lane count change; see pipeline::lane_start_positions).
asio::awaitable<void> write_lane_rows(pg::AsyncConnection& target, const std::string& slot,
                                      const std::vector<Lsn>& starts);
// The lanes' rows made one (a sink applies with one lane): lane 0's row at `lowest`, the rest
// removed, in one statement.
asio::awaitable<void> collapse_lane_checkpoints(pg::AsyncConnection& target,
                                                const std::string& slot, Lsn lowest);
// Removes every checkpoint row of the slot (its lanes' too): the target is copied at its next
// start.
asio::awaitable<void> forget_checkpoint(pg::AsyncConnection& target, const std::string& slot);
// Removes the rows of lanes 1 and up (before a copy, which restarts every lane at one point).
asio::awaitable<void> delete_lane_checkpoints(pg::AsyncConnection& target, const std::string& slot);

// When the slot is lost (the provider removed WAL it needed) or gone while the target has a
// checkpoint, says so: streaming cannot continue. nullopt otherwise.
std::optional<std::string> slot_lost(const std::string& slot_name,
                                     const std::optional<SlotInfo>& slot,
                                     const std::optional<Checkpoint>& checkpoint);
// A table the config maps that the (existing) publication leaves out, if any.
asio::awaitable<std::optional<std::string>> table_missing_from_publication(
    pg::AsyncConnection& source, const config::Config& config);

// When the slot's confirmed_flush_lsn is past a checkpoint that covers every acknowledgement,
// the changes in between are gone from the slot and missing from the target: says so, with
// both LSNs and the way out. nullopt when streaming from the checkpoint loses nothing.
std::optional<std::string> slot_ahead_of_checkpoint(const std::string& slot_name,
                                                    const SlotInfo& slot,
                                                    const Checkpoint& checkpoint);

// A problem found by `check`, with a hint on how to fix it.
struct Problem {
    std::string what;
    std::string hint;
    bool warning = false;  // worth fixing, but authsync works: check still passes
};

// An existing publication against the composite mappings of a resolved config: a table it
// lacks, or a row filter that is missing or selects another scope (e.g. made for another
// project). Empty when all is well.
asio::awaitable<std::vector<Problem>> check_publication_scope(pg::AsyncConnection& source,
                                                              const config::Config& config);

// The slot against the target's checkpoint (slot_ahead_of_checkpoint), for `check`.
asio::awaitable<std::vector<Problem>> check_slot_position(pg::AsyncConnection& source,
                                                          pg::AsyncConnection& target,
                                                          const config::Config& config);

asio::awaitable<std::vector<Problem>> check_source(pg::AsyncConnection& source,
                                                   const config::Config& config);
asio::awaitable<std::vector<Problem>> check_target(pg::AsyncConnection& target,
                                                   const config::Config& config);

}  // namespace authsync::engine
