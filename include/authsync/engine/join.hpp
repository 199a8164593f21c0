// Joining a slot that other targets stream from (fan-out): a target added to the config, one
// re-attached after a detach, one whose checkpoint is behind the slot.
//
// As PostgreSQL's tablesync does, the target gets a snapshot of its own: a TEMPORARY slot made
// with an exported snapshot has a consistent point C at or past everything the main slot has
// acknowledged, and the target is copied as of C, with C as its checkpoint. The main slot still
// holds every transaction that commits after C as long as it is not acknowledged past C
// meanwhile: that is the caller's part (Session: nothing streams during its copy; Supervisor:
// it holds the acknowledgement while others stream). The target then streams from C, skipping
// what commits before it, as after a first copy. The temporary slot goes with its connection.
#pragma once

#include <cstddef>
#include <functional>

#include "authsync/config/config.hpp"
#include "authsync/core/lsn.hpp"
#include "authsync/engine/status.hpp"
#include "authsync/pg/async_connection.hpp"

namespace authsync::engine {

namespace asio = boost::asio;

// Copies the one target of `config` (a Config::for_target, its lookups resolved) from a
// temporary slot's snapshot, `<slot>_add<index>`; returns C. `source` is a normal connection to
// the provider; `target` holds the target's schema and advisory lock. `before_snapshot` runs
// just before the temporary slot is made.
asio::awaitable<Lsn> copy_from_own_snapshot(pg::AsyncConnection& source,
                                            pg::AsyncConnection& target,
                                            const config::Config& config, std::size_t index,
                                            EngineStatus& status,
                                            const std::function<void()>& before_snapshot = {});

// The whole join of one target (`config`: a Config::for_target of target `index`) on
// connections of its own, while a session streams the others: the target's advisory lock for
// the slot (SlotBusyError while another instance holds it) and schema, its lookups resolved on
// the provider, then the copy. Returns C.
asio::awaitable<Lsn> join_alongside(config::Config config, std::size_t index, EngineStatus& status,
                                    std::function<void()> before_snapshot);

// The advisory lock that makes one instance the only writer of `slot` in a target database:
// true when taken.
asio::awaitable<bool> try_lock_slot(pg::AsyncConnection& target, const std::string& slot);

}  // namespace authsync::engine
