#include "authsync/cli/commands.hpp"

#include <utility>  // before Asio (Boost 1.74)

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <iostream>
#include <map>
#include <optional>

#include "authsync/apply/batch.hpp"
#include "authsync/cli/exposure.hpp"
#include "authsync/cli/service_notify.hpp"
#include "authsync/config/config.hpp"
#include "authsync/core/sql.hpp"
#include "authsync/engine/engine.hpp"
#include "authsync/engine/provisioning.hpp"
#include "authsync/engine/role.hpp"
#include "authsync/pg/async_connection.hpp"
#include "authsync/status/http_server.hpp"

namespace authsync::cli {

namespace asio = boost::asio;
using asio::awaitable;

namespace {

// SIGINT, SIGTERM and SIGHUP wait, blocked, while the engine starts (the config is read, the
// status endpoint binds), until its signal_sets take them: a SIGTERM then is a clean stop, a
// SIGHUP is not a kill by its default action. release() restores the mask the process had.
class StartupSignals {
public:
    StartupSignals() {
        sigset_t set;
        sigemptyset(&set);
        for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
        pthread_sigmask(SIG_BLOCK, &set, &previous_);
    }
    ~StartupSignals() { release(); }
    StartupSignals(const StartupSignals&) = delete;
    StartupSignals& operator=(const StartupSignals&) = delete;
    // What arrived meanwhile is delivered now, to the handlers installed since.
    void release() {
        if (std::exchange(held_, false)) pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
    }

private:
    sigset_t previous_;
    bool held_ = true;
};

// Runs one coroutine to completion on a fresh loop; rethrows what it threw.
template <typename T>
T run_on_loop(awaitable<T> work) {
    asio::io_context io;
    std::exception_ptr failure;
    std::optional<T> result;
    asio::co_spawn(io, std::move(work), [&](std::exception_ptr e, T value) {
        failure = e;
        if (!e) result = std::move(value);
    });
    io.run();
    if (failure) std::rethrow_exception(failure);
    return std::move(*result);
}

std::optional<config::Config> load(const std::string& path) {
    try {
        auto config = config::load_config(path, config::process_env());
        pg::validate_dsn(config.source.dsn, "source.dsn");
        check_targets(config);
        return config;
    } catch (const ConfigError& e) {
        std::cerr << "authsync: " << e.what() << '\n';
        return std::nullopt;
    }
}

}  // namespace

void check_targets(const config::Config& config) {
    const bool one =
        config.targets.size() == 1 && config.targets.front().name == config::kDefaultTargetName;
    std::map<std::string, const config::NamedTarget*> databases;
    for (std::size_t i = 0; i < config.targets.size(); ++i) {
        const auto& t = config.targets[i];
        const auto setting = one ? std::string("target.dsn") : fmt::format("targets[{}].dsn", i);
        pg::validate_dsn(t.target.dsn, setting);
        auto [it, inserted] = databases.try_emplace(*pg::dsn_database(t.target.dsn), &t);
        if (!inserted) {
            throw ConfigError(fmt::format(
                "{}: target {} names the same database as target {} ({}): each target needs a "
                "database of its own",
                t.location, t.name, it->second->name, it->second->location));
        }
    }
}

void setup_logging(const std::string& level, LogFormat format) {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto logger = std::make_shared<spdlog::logger>("authsync", sink);
    if (format == LogFormat::Json) {
        // Loggers made later (engine, status, ...) copy the default logger's sinks, and with
        // them this formatter.
        sink->set_formatter(make_json_formatter());
    } else {
        logger->set_formatter(make_text_formatter());
    }
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::from_str(level));
}

int run_command(const std::string& config_path) {
    return run_engine(config_path, engine::SessionOptions{}, true);
}

int sink_command(const std::string& config_path, const std::vector<std::string>& targets,
                 const std::string& listen) {
    SinkRun sink{targets, listen};
    return run_engine(config_path, engine::SessionOptions{}, true, &sink);
}

int resync_command(const std::string& config_path) {
    engine::SessionOptions options;
    options.resync = true;
    options.stop_after_backfill = true;
    return run_engine(config_path, options, false);
}

namespace {

// The indexes in `config` of a sink's targets, each once; nullopt after saying what is wrong
// (no transport, a name the config lacks).
std::optional<std::vector<std::size_t>> sink_targets(const config::Config& config,
                                                     const SinkRun& sink,
                                                     const std::string& config_path) {
    if (!config.transport.nats()) {
        std::cerr << "authsync: sink needs transport.kind: nats in " << config_path << '\n';
        return std::nullopt;
    }
    std::string names;
    for (const auto& t : config.targets) names += (names.empty() ? "" : ", ") + t.name;
    std::vector<std::size_t> indexes;
    for (const auto& wanted : sink.targets) {
        const auto it = std::find_if(config.targets.begin(), config.targets.end(),
                                     [&](const auto& t) { return t.name == wanted; });
        if (it == config.targets.end()) {
            std::cerr << "authsync: no target named \"" << wanted << "\" in " << config_path
                      << " (targets: " << names << ")\n";
            return std::nullopt;
        }
        const auto index = static_cast<std::size_t>(it - config.targets.begin());
        if (std::find(indexes.begin(), indexes.end(), index) == indexes.end()) {
            indexes.push_back(index);
        }
    }
    return indexes;
}

}  // namespace

int run_engine(const std::string& config_path, engine::SessionOptions session_options,
               bool serve_status, const SinkRun* sink) {
    StartupSignals startup_signals;
    auto config = load(config_path);
    if (!config) return 1;
    if (config->transport.nats() && !engine::has_jetstream()) {
        std::cerr << "authsync: transport.kind: nats needs authsync built with libnats "
                     "(install libnats-dev and build again)\n";
        return 1;
    }
    if (config->transport.nats() && session_options.stop_after_backfill) {
        std::cerr << "authsync: with transport.kind: nats each sink copies its own target: "
                     "remove a target's checkpoint row (authsync.checkpoint) and restart its "
                     "sink to copy it again\n";
        return 1;
    }
    // A sink process applies one or more targets: one supervisor each, on one loop.
    std::vector<std::size_t> sink_indexes;
    if (sink) {
        auto found = sink_targets(*config, *sink, config_path);
        if (!found) return 1;
        sink_indexes = std::move(*found);
        // The source's endpoint may listen on the same machine: a sink's is its own.
        config->status.listen = sink->listen;
    }
    for (const auto& w : exposure_warnings(*config, config::process_env())) spdlog::warn("{}", w);
    asio::io_context io;
    std::vector<std::unique_ptr<engine::Supervisor>> supervisors;
    if (sink_indexes.empty()) {
        supervisors.push_back(
            std::make_unique<engine::Supervisor>(io, std::move(*config), session_options));
    }
    for (const auto index : sink_indexes) {
        session_options.sink_target = index;
        supervisors.push_back(std::make_unique<engine::Supervisor>(io, *config, session_options));
    }
    engine::Supervisor& supervisor = *supervisors.front();
    // What the endpoint shows: the one supervisor's, or every sink's together.
    auto snapshot = [&supervisors] {
        auto shown = supervisors.front()->snapshot();
        for (std::size_t i = 1; i < supervisors.size(); ++i) {
            status::merge_into(shown, supervisors[i]->snapshot());
        }
        return shown;
    };
    std::unique_ptr<status::HttpServer> http;
    const auto& status_config = supervisor.config().status;
    if (serve_status && !status_config.listen.empty()) {
        status::RouteOptions options;
        options.token = status_config.token;
        options.max_ready_lag_seconds = status_config.max_ready_lag_seconds;
        status::ListenOptions listen;
        listen.listen = status_config.listen;
        listen.max_connections = status_config.max_connections;
        if (status_config.tls) {
            listen.certificate_file = status_config.tls->certificate;
            listen.key_file = status_config.tls->key;
        }
        http = std::make_unique<status::HttpServer>(io.get_executor(), std::move(listen), options,
                                                    snapshot);
        try {
            http->start();
        } catch (const Error& e) {
            spdlog::error("{}", e.what());
            return 1;
        }
    }
    // Under systemd (Type=notify): READY=1 once the engine is past starting, STATUS= on every
    // state change, WATCHDOG=1 from this loop at half the watchdog interval (a stuck loop
    // stops them), STOPPING=1 on SIGTERM.
    ServiceNotifier notifier;
    asio::steady_timer notify_timer(io);
    bool ready_sent = false;
    std::string last_state;
    std::function<void()> notify_tick = [&] {
        const auto state = snapshot().state;
        if (state != last_state) {
            std::string message = "STATUS=" + state;
            if (!ready_sent && state != "starting") {
                message = "READY=1\n" + message;
                ready_sent = true;
            }
            notifier.notify(message);
            last_state = state;
        }
        if (notifier.watchdog()) notifier.notify("WATCHDOG=1");
        auto period = std::chrono::milliseconds(1000);
        if (auto w = notifier.watchdog()) {
            period =
                std::min(period, std::chrono::duration_cast<std::chrono::milliseconds>(*w / 2));
        }
        notify_timer.expires_after(period);
        notify_timer.async_wait([&](const boost::system::error_code& ec) {
            if (!ec) notify_tick();
        });
    };
    if (serve_status && notifier.enabled()) notify_tick();

    asio::signal_set signals(io, SIGINT, SIGTERM);
    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& ec, int) {
            if (ec) return;
            notifier.notify("STOPPING=1");
            for (auto& each : supervisors) each->request_stop();
            signals.async_wait(on_signal);  // a second signal is harmless
        };
    signals.async_wait(on_signal);
    // SIGHUP: the config is read again and the session restarts with it (targets added join
    // with a copy of their own); one that does not parse leaves the running one in place.
    asio::signal_set hangup(io, SIGHUP);
    std::function<void(const boost::system::error_code&, int)> on_hangup =
        [&](const boost::system::error_code& ec, int) {
            if (ec) return;
            try {
                auto next = config::load_config(config_path, config::process_env());
                pg::validate_dsn(next.source.dsn, "source.dsn");
                check_targets(next);
                supervisor.reload(std::move(next));
            } catch (const ConfigError& e) {
                spdlog::error("reload: {}; the running config stays", e.what());
            }
            hangup.async_wait(on_hangup);
        };
    // A sink's targets are fixed at its start (restart it to change them).
    if (serve_status && sink_indexes.empty()) hangup.async_wait(on_hangup);
    startup_signals.release();
    // The exit code is the worst of the supervisors'; the loop ends with the last of them (a
    // sink of several targets fails alone for one that stops for good).
    int exit_code = 0;
    std::size_t running = supervisors.size();
    for (auto& each : supervisors) {
        asio::co_spawn(io, each->run(), [&](std::exception_ptr e, int code) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& err) {
                    spdlog::error("engine failed: {}", err.what());
                }
                code = 1;
            }
            exit_code = std::max(exit_code, code);
            if (--running > 0) return;
            signals.cancel();
            hangup.cancel();
            notify_timer.cancel();
            if (http) http->stop();
            io.stop();
        });
    }
    io.run();
    return exit_code;
}

int check_command(const std::string& config_path) {
    auto config = load(config_path);
    if (!config) return 1;
    std::size_t mappings = 0, presets = 0;
    for (const auto& t : config->targets) {
        mappings += t.mappings.size();
        presets += t.composites.size();
    }
    std::cout << "config " << config_path << ": ok (" << mappings << " mapping(s), " << presets
              << " preset(s)";
    if (config->targets.size() > 1) std::cout << ", " << config->targets.size() << " targets";
    std::cout << ")\n";
    for (const auto& w : exposure_warnings(*config, config::process_env())) {
        std::cout << "warning: " << w << '\n';
    }
    std::vector<engine::Problem> problems;
    auto check_side = [&](const std::string& side, const std::string& dsn,
                          const config::Config* target) {
        try {
            auto found = run_on_loop([&]() -> awaitable<std::vector<engine::Problem>> {
                pg::AsyncConnection conn(co_await asio::this_coro::executor);
                co_await conn.connect(dsn, "authsync check");
                // (Not a conditional expression: GCC 12 mishandles co_await inside one.)
                if (!target) co_return co_await engine::check_source(conn, *config);
                co_return co_await engine::check_target(conn, *target);
            }());
            problems.insert(problems.end(), found.begin(), found.end());
            std::cout << side << " " << pg::redact_dsn(dsn) << ": connected\n";
        } catch (const Error& e) {
            problems.push_back({side + ": " + e.what(),
                                "check the dsn, that the server runs and accepts connections "
                                "from this host"});
        }
    };
    check_side("source", config->source.dsn, nullptr);
    const bool several = config->targets.size() > 1;
    for (std::size_t i = 0; i < config->targets.size(); ++i) {
        const auto view = config->for_target(i);
        const auto side = several ? "target " + view.targets.front().name : std::string("target");
        check_side(side, view.target.dsn, &view);
        try {
            auto found = run_on_loop([&]() -> awaitable<std::vector<engine::Problem>> {
                auto ex = co_await asio::this_coro::executor;
                pg::AsyncConnection source(ex), target(ex);
                co_await source.connect(config->source.dsn, "authsync check");
                co_await target.connect(view.target.dsn, "authsync check");
                co_return co_await engine::check_slot_position(source, target, view);
            }());
            for (auto& p : found) {
                if (several) p.what = side + ": " + p.what;
                problems.push_back(std::move(p));
            }
        } catch (const Error&) {
            // A side that cannot be reached is already reported above.
        }
    }
    std::size_t failed = 0;
    for (const auto& p : problems) {
        std::cout << (p.warning ? "warning: " : "problem: ") << p.what << "\n  hint: " << p.hint
                  << '\n';
        if (!p.warning) ++failed;
    }
    std::cout << (failed == 0 ? "all checks passed\n"
                              : std::to_string(failed) + " problem(s) found\n");
    return failed == 0 ? 0 : 1;
}

int init_command(const std::string& config_path) {
    auto config = load(config_path);
    if (!config) return 1;
    try {
        run_on_loop([&]() -> awaitable<int> {
            auto ex = co_await asio::this_coro::executor;
            for (std::size_t i = 0; i < config->targets.size(); ++i) {
                const auto view = config->for_target(i);
                pg::AsyncConnection target(ex);
                co_await target.connect(view.target.dsn, "authsync init");
                co_await engine::ensure_target_schema(target, view);
                if (config->targets.size() == 1) {
                    std::cout << "target: schema ready\n";
                } else {
                    std::cout << "target " << view.targets.front().name << ": schema ready\n";
                }
            }
            pg::AsyncConnection source(ex);
            co_await source.connect(config->source.dsn, "authsync init");
            co_await engine::resolve_lookups(source, *config);
            if (co_await engine::publication_exists(source, config->source.publication)) {
                std::cout << "source: publication " << config->source.publication << " exists\n";
            } else {
                auto notes = co_await engine::create_publication(source, *config);
                std::cout << "source: created publication " << config->source.publication << '\n';
                for (const auto& note : notes) std::cout << "source: note: " << note << '\n';
            }
            if (co_await engine::find_slot(source, config->source.slot)) {
                std::cout << "source: slot " << config->source.slot << " exists\n";
            } else {
                co_await engine::create_slot(source, config->source.slot);
                std::cout << "source: created slot " << config->source.slot << '\n';
            }
            co_return 0;
        }());
    } catch (const Error& e) {
        std::cerr << "authsync init: " << e.what() << '\n';
        return 1;
    }
    return 0;
}

namespace {

// The checkpoint belongs to the dropped slot; the synced users stay. Mirrors are authsync's
// own copies of provider rows: without the slot they would only go stale.
awaitable<void> teardown_target(asio::any_io_executor ex, const config::Config& config,
                                const config::NamedTarget& t) {
    const std::string about =
        config.targets.size() > 1 ? fmt::format("target {}", t.name) : std::string("target");
    pg::AsyncConnection target(ex);
    co_await target.connect(t.target.dsn, "authsync teardown");
    auto state = co_await target.query("SELECT to_regclass('authsync.checkpoint')");
    if (!state.is_null(0, 0)) {
        co_await target.query_params(
            std::string("DELETE FROM authsync.checkpoint WHERE ") + apply::kSlotCheckpointRows,
            pg::params(config.source.slot));
    }
    std::cout << about << ": removed the checkpoint of slot " << config.source.slot
              << "; users_sync and its data are left in place\n";
    for (const auto& composite : t.composites) {
        for (const auto& s : composite.sources) {
            co_await target.query("DROP TABLE IF EXISTS " +
                                  quote_qualified("authsync", s.mirror_table));
        }
        std::cout << about << ": dropped the mirrors of preset " << composite.preset << '\n';
    }
}

}  // namespace

int teardown_command(const std::string& config_path) {
    auto config = load(config_path);
    if (!config) return 1;
    try {
        run_on_loop([&]() -> awaitable<int> {
            auto ex = co_await asio::this_coro::executor;
            pg::AsyncConnection source(ex);
            co_await source.connect(config->source.dsn, "authsync teardown");
            if (co_await engine::find_slot(source, config->source.slot)) {
                co_await source.query_params("SELECT pg_drop_replication_slot($1)",
                                             pg::params(config->source.slot));
                std::cout << "source: dropped slot " << config->source.slot << '\n';
            } else {
                std::cout << "source: slot " << config->source.slot << " does not exist\n";
            }
            // In the least-privilege setup (docs/SECURITY.md) the publication belongs to the
            // tables' owner: say so, and still remove the checkpoint below.
            std::optional<std::string> refused;
            try {
                co_await source.query("DROP PUBLICATION IF EXISTS " +
                                      quote_identifier(config->source.publication));
            } catch (const pg::PgError& e) {
                if (e.sqlstate() != "42501") throw;
                refused = e.what();
            }
            if (refused) {
                std::cout << "source: publication " << config->source.publication
                          << " left in place: " << *refused << " (its owner can run DROP "
                          << "PUBLICATION " << quote_identifier(config->source.publication)
                          << "; it holds no WAL)\n";
            } else {
                std::cout << "source: dropped publication " << config->source.publication << '\n';
            }
            for (const auto& t : config->targets) {
                co_await teardown_target(ex, *config, t);
            }
            co_return 0;
        }());
    } catch (const Error& e) {
        std::cerr << "authsync teardown: " << e.what() << '\n';
        return 1;
    }
    return 0;
}

}  // namespace authsync::cli

namespace authsync::cli {

int dead_letter_command(const std::string& config_path, const std::string& action) {
    auto config = load(config_path);
    if (!config) return 1;
    if (config->targets.size() > 1) {
        std::cerr << "authsync dead-letter: the config has " << config->targets.size()
                  << " targets; dead-letter reads one target's, and choosing one is not there "
                     "yet: use a config with that target alone\n";
        return 1;
    }
    try {
        return run_on_loop([&]() -> awaitable<int> {
            pg::AsyncConnection target(co_await asio::this_coro::executor);
            co_await target.connect(config->target.dsn, "authsync dead-letter");
            auto exists = co_await target.query("SELECT to_regclass('authsync.dead_letter')");
            if (exists.is_null(0, 0)) {
                std::cout << "no dead letters (authsync.dead_letter does not exist yet)\n";
                co_return 0;
            }
            auto rows = co_await target.query_params(
                "SELECT id, mapping, target, key, op, coalesce(payload::text, payload_text), "
                "change_time::text, error, attempts, coalesce(sqlstate, '') FROM "
                "authsync.dead_letter WHERE slot = $1 ORDER BY id",
                pg::params(config->source.slot));
            if (action == "list") {
                for (int i = 0; i < rows.rows(); ++i) {
                    // The key and the error, never the payload: it holds users' data. Nor the
                    // server's message where it may quote the row (PgError's rule).
                    const std::string sqlstate(rows.get(i, 9));
                    std::string error(rows.get(i, 7));
                    if (pg::withholds_server_message(sqlstate)) {
                        error = pg::condition_name(sqlstate) + " (SQLSTATE " + sqlstate +
                                "; the server's message is in authsync.dead_letter.error)";
                    }
                    std::cout << rows.get(i, 0) << '\t' << rows.get(i, 1) << '\t' << rows.get(i, 3)
                              << '\t' << rows.get(i, 4) << "\tattempts=" << rows.get(i, 8) << '\t'
                              << error << '\n';
                }
                std::cout << rows.rows() << " dead letter(s)\n";
                co_return 0;
            }
            // retry: each change again, in its own transaction; what applies leaves the table.
            // A change older than what the target now holds for that user (a later change was
            // applied since) is superseded: it is removed without being written back.
            int applied = 0, failed = 0, superseded = 0;
            for (int i = 0; i < rows.rows(); ++i) {
                const std::string id(rows.get(i, 0));
                const std::string mapping(rows.get(i, 1));
                const mapping::MappingRule* rule = nullptr;
                for (const auto& m : config->mappings) {
                    if (m.source_name() == mapping) rule = &m;
                }
                bool composite = false;
                for (const auto& c : config->composites) {
                    for (const auto& src : c.sources) composite |= src.source_name() == mapping;
                    composite |= mapping.rfind(c.preset + ":", 0) == 0;
                }
                if (rule == nullptr && composite) {
                    // A mirror change or a recomputation has no raw_json of its own to write.
                    std::cerr << "dead letter " << id << ": " << mapping
                              << " belongs to a preset, whose changes cannot be retried one by "
                                 "one; fix the cause, then run `authsync resync`; left in place\n";
                    ++failed;
                    continue;
                }
                if (rule == nullptr) {
                    std::cerr << "dead letter " << id << ": mapping " << mapping
                              << " is no longer in the config; left in place\n";
                    ++failed;
                    continue;
                }
                co_await target.query("BEGIN");
                std::optional<std::string> error;  // what() is shown, the server's is kept
                std::string server_error;
                bool newer = false;
                try {
                    const auto table = quote_qualified(rule->target_schema, rule->target_table);
                    if (rows.get(i, 4) == "upsert") {
                        auto r = co_await target.query_params(
                            apply::users_sync_upsert(
                                table,
                                "VALUES ($1::jsonb, coalesce($2::timestamptz, now()), NULL)") +
                                " WHERE t.updated_at IS NULL OR t.updated_at <= "
                                "EXCLUDED.updated_at RETURNING 1",
                            pg::params(rows.get_optional(i, 5), rows.get_optional(i, 6)));
                        newer = r.rows() == 0;
                    } else {
                        // Nothing to delete, or the user changed after the delete: either way
                        // the target needs nothing from this change.
                        // (if/else, not ?: : GCC 12 destroys a conditional's temporaries
                        // twice inside a coroutine.)
                        std::string sql = "UPDATE " + table +
                                          " SET deleted_at = coalesce($2::timestamptz, now()) "
                                          "WHERE id = $1";
                        if (rule->on_delete == mapping::OnDelete::Hard) {
                            sql = "DELETE FROM " + table + " WHERE id = $1";
                        }
                        sql +=
                            " AND (updated_at IS NULL OR $2::timestamptz IS NULL OR "
                            "updated_at <= $2::timestamptz) RETURNING 1";
                        auto r = co_await target.query_params(
                            sql, pg::params(std::string(rows.get(i, 3)), rows.get_optional(i, 6)));
                        newer = r.rows() == 0;
                    }
                    co_await target.query_params("DELETE FROM authsync.dead_letter WHERE id = $1",
                                                 pg::params(id));
                } catch (const pg::PgError& e) {
                    error = e.what();
                    server_error = e.server_message();
                }
                if (error) {
                    co_await target.query("ROLLBACK");
                    co_await target.query_params(
                        "UPDATE authsync.dead_letter SET attempts = attempts + 1, retried_at = "
                        "now(), error = $2 WHERE id = $1",
                        pg::params(id, server_error));
                    std::cerr << "dead letter " << id << " (" << mapping << " key "
                              << rows.get(i, 3) << ") still rejected: " << *error << '\n';
                    ++failed;
                } else {
                    co_await target.query("COMMIT");
                    if (newer) {
                        ++superseded;
                    } else {
                        ++applied;
                    }
                }
            }
            std::cout << applied << " applied, " << failed << " still failing";
            if (superseded > 0) {
                std::cout << "; " << superseded
                          << " superseded by a newer change in the target (removed, not written)";
            }
            std::cout << '\n';
            co_return failed == 0 ? 0 : 1;
        }());
    } catch (const Error& e) {
        std::cerr << "authsync dead-letter: " << e.what() << '\n';
        return 1;
    }
}

}  // namespace authsync::cli
