// Silent loss at the edges: savepoints, encodings, unstorable dead letters, durability at
// start, and a slot ahead of the target's checkpoint. Real servers, one scenario per test.
#include <signal.h>
#include <stdlib.h>
#include <catch2/catch.hpp>

#include <thread>

#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using test::row_exists;
using test::SyncFixture;
using test::wait_until;

namespace {

test::SyncOptions with_dead_letters(test::SyncOptions options = {}) {
    options.extra_yaml += "apply:\n  on_error: dead_letter\n";
    return options;
}

std::string display_name(SyncFixture& f, const std::string& id) {
    auto r = f.target().exec_params(
        "SELECT raw_json->>'display_name' FROM neon_auth.users_sync WHERE id = $1", pg::params(id));
    return r.rows() == 1 && !r.is_null(0, 0) ? std::string(r.get(0, 0)) : "<none>";
}

std::string checkpoint_lsn(SyncFixture& f) {
    return f.target_value("SELECT end_lsn FROM authsync.checkpoint WHERE slot = '" + f.slot() +
                          "'");
}

std::string confirmed_flush(SyncFixture& f) {
    return f.provider_value(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '" + f.slot() +
        "'");
}

// Streams u1, then u2, stops authsync, and puts the target back to a backup taken between
// the two (u2 and the checkpoint past it gone), while the slot has confirmed u2. Returns the
// backup's checkpoint.
std::string restore_target_before_second_user(SyncFixture& f) {
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('u1', 'One')");
    REQUIRE(wait_until([&] { return row_exists(f, "u1"); }));
    REQUIRE(f.wait_caught_up());
    const auto backup_lsn = checkpoint_lsn(f);
    p.exec("INSERT INTO public.users (id, name) VALUES ('u2', 'Two')");
    REQUIRE(wait_until([&] { return row_exists(f, "u2"); }));
    REQUIRE(f.wait_caught_up());
    REQUIRE(f.stop() == 0);
    f.target().exec("DELETE FROM neon_auth.users_sync WHERE id = 'u2'");
    f.target().exec_params("UPDATE authsync.checkpoint SET end_lsn = $1 WHERE slot = $2",
                           {backup_lsn, f.slot()});
    return backup_lsn;
}

constexpr const char* kUsersTable = R"(
    CREATE TABLE public.users (id text PRIMARY KEY, name text, email text, metadata json);
    CREATE TABLE public.unrelated (id serial PRIMARY KEY, note text);
)";

constexpr const char* kUsersMapping =
    "  - source: public.users\n"
    "    key: id\n"
    "    fields:\n"
    "      id: id\n"
    "      display_name: name\n"
    "      primary_email: email\n"
    "      server_metadata: metadata\n";

}  // namespace

TEST_CASE(
    "a change rejected in the second statement of a target transaction leaves the first applied",
    "[hardening][integration]") {
    // SQL_ASCII stores any bytes; 0xFF is no UTF-8, so the target rejects that change. Two
    // mappings make two statements in one target transaction (admins_sync goes first).
    auto options = with_dead_letters();
    options.provider_db_options = "ENCODING 'SQL_ASCII' LOCALE 'C' TEMPLATE template0";
    options.provider_ddl =
        std::string(kUsersTable) + "CREATE TABLE public.admins (id text PRIMARY KEY, name text);";
    options.mappings_yaml = std::string(kUsersMapping) +
                            "  - source: public.admins\n"
                            "    target: neon_auth.admins_sync\n"
                            "    key: id\n"
                            "    fields:\n"
                            "      id: id\n"
                            "      display_name: name\n";
    SyncFixture f(options);
    f.start();
    auto p = f.provider();
    p.exec(
        "BEGIN; INSERT INTO public.admins (id, name) VALUES ('g1', 'Grace'); "
        "INSERT INTO public.users (id, name) VALUES ('b1', E'Bad\\377Byte'); COMMIT");
    REQUIRE(f.wait_caught_up());
    CHECK(row_exists(f, "g1", "neon_auth.admins_sync"));  // the statement before stays
    CHECK_FALSE(row_exists(f, "b1"));
    CHECK(f.target_value("SELECT key || ' ' || sqlstate FROM authsync.dead_letter") == "b1 22021");
    CHECK(f.target_value("SELECT payload IS NULL AND payload_text LIKE '%Bad\\\\xFFByte%' "
                         "FROM authsync.dead_letter") == "t");
    // Valid text of the same provider goes on as it is.
    p.exec("INSERT INTO public.users (id, name) VALUES ('ok1', 'Plain ASCII')");
    REQUIRE(wait_until([&] { return row_exists(f, "ok1"); }));
    CHECK(display_name(f, "ok1") == "Plain ASCII");
    CHECK(f.process().running());
    CHECK(f.stop() == 0);
}

TEST_CASE("a LATIN1 provider's accented names arrive exact, copied and streamed",
          "[hardening][integration]") {
    test::SyncOptions options;
    options.provider_db_options = "ENCODING 'LATIN1' LOCALE 'C' TEMPLATE template0";
    options.provider_ddl = kUsersTable;
    options.mappings_yaml = kUsersMapping;
    SyncFixture f(options);
    // The test's own connection speaks UTF-8; the provider stores LATIN1.
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('c1', 'Zoë Ångström')");
    f.start();
    f.provider().exec(
        "INSERT INTO public.users (id, name) VALUES ('s1', 'José Müller-Lüdenscheidt')");
    REQUIRE(wait_until([&] { return row_exists(f, "s1"); }));
    CHECK(display_name(f, "c1") == "Zoë Ångström");
    CHECK(display_name(f, "s1") == "José Müller-Lüdenscheidt");
    CHECK(f.stop() == 0);
}

TEST_CASE("SJIS client settings on the role and in the environment change nothing",
          "[hardening][integration]") {
    test::SyncOptions options;
    options.provider_ddl = kUsersTable;
    options.mappings_yaml = kUsersMapping;
    SyncFixture f(options);
    // In SJIS, ソ ends in 0x5C, the byte of a backslash.
    for (auto* side : {&test::provider_cluster(), &test::target_cluster()}) {
        const auto db = side == &test::target_cluster() ? f.target_db : f.provider_db;
        side->connect().exec("ALTER ROLE postgres IN DATABASE " + quote_identifier(db) +
                             " SET client_encoding = 'SJIS'");
        side->connect().exec("ALTER ROLE postgres IN DATABASE " + quote_identifier(db) +
                             " SET standard_conforming_strings = off");
    }
    ::setenv("PGCLIENTENCODING", "SJIS", 1);
    f.provider().exec("INSERT INTO public.users (id, name) VALUES ('c1', 'ソn copied')");
    f.start();
    ::unsetenv("PGCLIENTENCODING");
    const std::string tricky = "ソn ソ' ソ\\' 表\\ 能 O'Brien";
    f.provider().exec_params("INSERT INTO public.users (id, name) VALUES ('s1', $1)", {tricky});
    REQUIRE(wait_until([&] { return row_exists(f, "s1"); }));
    CHECK(display_name(f, "c1") == "ソn copied");
    CHECK(display_name(f, "s1") == tricky);
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "2");
    CHECK(f.stop() == 0);
}

TEST_CASE("a json value with \\u0000 that jsonb refuses is dead-lettered as text and sync goes on",
          "[hardening][integration]") {
    auto options = with_dead_letters();
    options.provider_ddl = kUsersTable;
    options.mappings_yaml = kUsersMapping;
    SyncFixture f(options);
    f.start();
    auto p = f.provider();
    p.exec(
        "BEGIN; INSERT INTO public.users (id, name) VALUES ('good', 'Ada'); "
        "INSERT INTO public.users (id, name, metadata) VALUES ('nul', 'Bob', '{\"a\": "
        "\"x\\u0000y\"}'); "
        "COMMIT");
    REQUIRE(f.wait_caught_up());
    CHECK(f.process().running());
    CHECK(row_exists(f, "good"));
    CHECK_FALSE(row_exists(f, "nul"));
    CHECK(f.target_value("SELECT key || ' ' || sqlstate || ' ' || (payload IS NULL)::text FROM "
                         "authsync.dead_letter") == "nul 22P05 true");
    CHECK(f.target_value("SELECT payload_text LIKE '%x\\\\u0000y%' FROM authsync.dead_letter") ==
          "t");
    // `dead-letter list` reads it; the payload stays out of what it prints.
    auto listed = test::run_cli("dead-letter list --config " + f.config_path());
    CHECK(listed.rc == 0);
    CHECK_THAT(listed.text, Catch::Contains("nul") && !Catch::Contains("x\\u0000y"));
    p.exec("INSERT INTO public.users (id, name) VALUES ('after', 'Cy')");
    REQUIRE(wait_until([&] { return row_exists(f, "after"); }));
    CHECK(f.stop() == 0);
}

TEST_CASE("a restart does not confirm a checkpoint the target has not flushed yet",
          "[hardening][integration][restart]") {
    test::SlowTargetWalWriter slow;
    auto& target = test::target_cluster();
    SyncFixture f;
    f.start();
    REQUIRE(f.wait_caught_up());
    // The walwriter still flushes once per 10 s: when that falls inside an attempt, the
    // target holds nothing unflushed to lose, and the next attempt (a new user) is made.
    std::string id, after_insert, held_back;
    bool unflushed = false;
    for (int attempt = 0; attempt < 4 && !unflushed; ++attempt) {
        id = "c" + std::to_string(attempt);
        f.provider().exec("INSERT INTO public.users (id, name) VALUES ('" + id + "', 'C')");
        after_insert = f.provider_value("SELECT pg_current_wal_lsn()");
        REQUIRE(wait_until([&] { return row_exists(f, id); }));
        const auto committed_at = f.target_value("SELECT pg_current_wal_insert_lsn()");
        f.kill9();  // the checkpoint is committed in the target, not yet flushed there
        // An idle acknowledgement after the change is written only once the change is flushed
        // (and then rightly acknowledged): such an attempt proves nothing, the next one is made.
        const bool last_commit_is_the_change =
            f.target_value("SELECT max(end_lsn) <= '" + after_insert +
                           "'::pg_lsn FROM authsync.checkpoint WHERE slot = '" + f.slot() + "'") ==
            "t";
        f.start();
        std::this_thread::sleep_for(1500ms);  // the new session's status updates go out
        // The slot first, then the target: a flush that the target's walwriter makes between
        // the two reads cannot make the check fail wrongly (flush only moves forward).
        held_back = f.provider_value("SELECT confirmed_flush_lsn < '" + after_insert +
                                     "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" +
                                     f.slot() + "'");
        unflushed =
            last_commit_is_the_change && f.target_value("SELECT pg_current_wal_flush_lsn() < '" +
                                                        committed_at + "'::pg_lsn") == "t";
    }
    REQUIRE(unflushed);
    // The new session has not told the provider it may forget the unflushed change.
    CHECK(held_back == "t");
    target.stop("immediate");  // the unflushed commit and its checkpoint are gone
    target.start();
    REQUIRE(wait_until([&] { return row_exists(f, id); }, 60s));
    CHECK(f.wait_caught_up());
    CHECK(f.process().running());
    CHECK(f.stop() == 0);
}

TEST_CASE(
    "a target restored to an older checkpoint than the slot stops run and check, and resync "
    "repairs it",
    "[hardening][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    const auto backup_lsn = restore_target_before_second_user(f);
    const auto slot_lsn = confirmed_flush(f);

    f.start_unchecked();
    CHECK(f.process().wait(30s) == 1);
    const auto log = f.process().log();
    CHECK_THAT(log, Catch::Contains("past the target's checkpoint") && Catch::Contains(slot_lsn) &&
                        Catch::Contains(backup_lsn) && Catch::Contains("authsync resync"));
    auto checked = test::run_cli("check --config " + f.config_path());
    CHECK(checked.rc == 1);
    CHECK_THAT(checked.text, Catch::Contains("past the target's checkpoint"));

    CHECK(test::run_cli("resync --config " + f.config_path()).rc == 0);
    CHECK(row_exists(f, "u2"));
    f.start();
    p.exec("INSERT INTO public.users (id, name) VALUES ('u3', 'Three')");
    REQUIRE(wait_until([&] { return row_exists(f, "u3"); }));
    CHECK(f.stop() == 0);
}

TEST_CASE("with on_slot_lost resync a slot ahead of the checkpoint is repaired by a resync",
          "[hardening][integration]") {
    SyncFixture f;
    f.start();
    restore_target_before_second_user(f);
    // The same config, told to resync by itself.
    test::run_shell("sed -i 's/^source:$/source:\\n  on_slot_lost: resync/' " + f.config_path());
    f.start();
    REQUIRE(wait_until([&] { return row_exists(f, "u2"); }));
    CHECK_THAT(f.process().log(), Catch::Contains("resyncing (source.on_slot_lost: resync)"));
    CHECK(f.process().running());
    CHECK(f.stop() == 0);
}

TEST_CASE("after an idle period with unrelated provider WAL a restart streams on",
          "[hardening][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('u1', 'One')");
    REQUIRE(wait_until([&] { return row_exists(f, "u1"); }));
    REQUIRE(f.wait_caught_up());
    const auto data_checkpoint = checkpoint_lsn(f);
    // WAL the publication does not carry: only keepalives move the slot past it.
    for (int i = 0; i < 20; ++i) {
        p.exec("INSERT INTO public.unrelated (note) SELECT 'x' FROM generate_series(1, 200)");
        std::this_thread::sleep_for(50ms);
    }
    REQUIRE(f.wait_caught_up());
    CHECK(f.provider_value("SELECT confirmed_flush_lsn > '" + data_checkpoint +
                           "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + f.slot() +
                           "'") == "t");
    // What was acknowledged is recorded in the target first.
    CHECK(f.target_value("SELECT end_lsn >= '" + confirmed_flush(f) +
                         "'::pg_lsn FROM authsync.checkpoint WHERE slot = '" + f.slot() + "'") ==
          "t");
    f.kill9();
    f.start();
    std::this_thread::sleep_for(1s);
    REQUIRE(f.process().running());
    p.exec("INSERT INTO public.users (id, name) VALUES ('u2', 'Two')");
    REQUIRE(wait_until([&] { return row_exists(f, "u2"); }));
    CHECK(f.stop() == 0);
}
