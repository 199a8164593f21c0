// Backfill: the initial copy of the provider's users, consistent with the slot.
//
// The slot is created with an exported snapshot; every mapped table is read as of that snapshot
// (REPEATABLE READ + SET TRANSACTION SNAPSHOT, COPY ... TO STDOUT), each row mapped by the same
// BoundMapping the stream uses, and written to the target with COPY into a staging table, then
// upserted. Target rows of the mapping that the copy did not see are soft-deleted (or removed,
// on_delete: hard): that reconciles the target after a lost slot. The slot's consistent point
// is written as the checkpoint in the same target transaction that holds all of it, so an
// interrupted backfill leaves nothing that looks done; streaming then starts at that point.
#pragma once

#include <string>

#include "authsync/config/config.hpp"
#include "authsync/core/lsn.hpp"
#include "authsync/engine/status.hpp"
#include "authsync/pg/async_connection.hpp"

namespace authsync::engine {

namespace asio = boost::asio;

// `source` must be a normal connection to the provider with no transaction open; the snapshot
// stays valid while the replication connection that exported it stays idle. The process state
// is the caller's (a target that joins alongside copies while the others stream).
asio::awaitable<void> run_backfill(pg::AsyncConnection& source, pg::AsyncConnection& target,
                                   const config::Config& config, const std::string& snapshot_name,
                                   Lsn consistent_point, EngineStatus& status);

// Records what each table mapping's rows are for (authsync.preset_scope, keyed by
// MappingRule::scope_record), so that a later change of a scope is refused until a new copy.
asio::awaitable<void> record_mapping_scopes(pg::AsyncConnection& target,
                                            const config::Config& config);

}  // namespace authsync::engine
