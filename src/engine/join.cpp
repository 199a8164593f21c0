#include "authsync/engine/join.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "authsync/core/error.hpp"
#include "authsync/core/sql.hpp"
#include "authsync/engine/backfill.hpp"
#include "authsync/engine/log.hpp"
#include "authsync/engine/provisioning.hpp"

namespace authsync::engine {

asio::awaitable<bool> try_lock_slot(pg::AsyncConnection& target, const std::string& slot) {
    auto r = co_await target.query_params("SELECT pg_try_advisory_lock(hashtext($1))",
                                          pg::params("authsync:slot:" + slot));
    co_return r.get(0, 0) == "t";
}

asio::awaitable<Lsn> copy_from_own_snapshot(pg::AsyncConnection& source,
                                            pg::AsyncConnection& target,
                                            const config::Config& config, std::size_t index,
                                            EngineStatus& status,
                                            const std::function<void()>& before_snapshot) {
    const auto& src = config.source;
    const auto& name = config.targets.front().name;
    pg::AsyncConnection snapshot_conn(co_await asio::this_coro::executor);
    co_await snapshot_conn.connect(src.dsn, "authsync", true);
    const auto temporary = fmt::format("{}_add{}", src.slot.substr(0, 50), index);
    if (before_snapshot) before_snapshot();
    auto created =
        co_await snapshot_conn.query("CREATE_REPLICATION_SLOT " + quote_identifier(temporary) +
                                     " TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')");
    const auto copied_at = Lsn::parse_or_throw(created.get(0, 1));
    const std::string snapshot_name(created.get(0, 2));
    logger("engine")->info("target {}: joins slot {}: copying its users as of {}", name, src.slot,
                           copied_at.to_string());
    co_await delete_lane_checkpoints(target, src.slot);
    co_await run_backfill(source, target, config, snapshot_name, copied_at, status);
    co_return copied_at;
}

asio::awaitable<Lsn> join_alongside(config::Config mine, std::size_t index, EngineStatus& status,
                                    std::function<void()> before_snapshot) {
    auto ex = co_await asio::this_coro::executor;
    pg::AsyncConnection target(ex);
    co_await target.connect(mine.target.dsn, "authsync");
    // A copy that waits on a lock held in the target would hold the slot's acknowledgement
    // (before_snapshot) for as long: past the lag limit it fails and is tried again later.
    if (const auto limit = mine.fanout.max_target_lag_seconds) {
        co_await target.query(fmt::format("SET lock_timeout = '{}s'", limit->count()));
    }
    // The session that found it joining held the lock a moment ago: its backend may still be
    // on its way out.
    for (int attempt = 0; !co_await try_lock_slot(target, mine.source.slot); ++attempt) {
        if (attempt == 25) {
            throw SlotBusyError(fmt::format("target {}: another instance holds slot {}",
                                            mine.targets.front().name, mine.source.slot));
        }
        asio::steady_timer pause(ex, std::chrono::milliseconds(200));
        co_await pause.async_wait(asio::use_awaitable);
    }
    co_await ensure_target_schema(target, mine);
    pg::AsyncConnection source(ex);
    co_await source.connect(mine.source.dsn, "authsync");
    co_await resolve_lookups(source, mine);
    co_return co_await copy_from_own_snapshot(source, target, mine, index, status, before_snapshot);
}

}  // namespace authsync::engine
