// Changes the target rejects: stop naming the key, or set them aside in authsync.dead_letter.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using test::SyncFixture;
using test::wait_until;

namespace {

test::SyncOptions dead_letter_options() {
    test::SyncOptions options;
    options.extra_yaml = "apply:\n  on_error: dead_letter\n";
    return options;
}

// users_sync's generated created_at casts raw_json's signed_up_at_millis to bigint: mapped from
// the text column bio, a bio that is not a number makes the target reject the row with 22P02,
// whose server message quotes the value (`invalid input syntax for type bigint: "..."`).
test::SyncOptions bigint_poison_options() {
    test::SyncOptions options;
    options.log_level = "info";
    options.mappings_yaml =
        "  - source: public.users\n"
        "    key: id\n"
        "    fields:\n"
        "      id: id\n"
        "      display_name: name\n"
        "      signed_up_at_millis: bio\n";
    return options;
}

// Lines of a log that do not start as authsync's text format starts them (a timestamp of this
// century, then a level): a forged line starts with the year 2030 here.
std::vector<std::string> forged_lines(const std::string& log) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < log.size()) {
        auto end = log.find('\n', start);
        if (end == std::string::npos) end = log.size();
        auto line = log.substr(start, end - start);
        if (line.rfind("2030-", 0) == 0) out.push_back(line);
        start = end + 1;
    }
    return out;
}

// The target rejects any user named 'evil' (SQLSTATE 23514).
void forbid_evil(SyncFixture& f) {
    f.target().exec(
        "ALTER TABLE neon_auth.users_sync ADD CONSTRAINT no_evil CHECK (name <> 'evil')");
}

}  // namespace

TEST_CASE("a rejected change stops authsync with its key and SQLSTATE, never its values",
          "[poison][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    forbid_evil(f);
    // A batch of good changes around the poison one: the whole transaction must stay out.
    p.exec(
        "BEGIN; INSERT INTO public.users (id, name) VALUES ('good1', 'a'); "
        "INSERT INTO public.users (id, name, email) VALUES ('poison-key', 'evil', "
        "'pii@example.com'); "
        "INSERT INTO public.users (id, name) VALUES ('good2', 'b'); COMMIT");
    CHECK(f.process().wait(20s) == 1);
    auto log = f.process().log();
    CHECK_THAT(log, Catch::Contains("public.users key poison-key") && Catch::Contains("23514"));
    CHECK_THAT(log, !Catch::Contains("pii@example.com"));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "0");
}

TEST_CASE("with on_error dead_letter a rejected change is set aside and the rest applies",
          "[poison][integration]") {
    SyncFixture f(dead_letter_options());
    f.start();
    auto p = f.provider();
    forbid_evil(f);
    p.exec(
        "BEGIN; INSERT INTO public.users (id, name) VALUES ('good1', 'a'); "
        "INSERT INTO public.users (id, name) VALUES ('poison', 'evil'); "
        "INSERT INTO public.users (id, name) VALUES ('good2', 'b'); COMMIT");
    REQUIRE(f.wait_caught_up());
    CHECK(f.target_value("SELECT string_agg(id, ',' ORDER BY id) FROM neon_auth.users_sync") ==
          "good1,good2");
    CHECK(f.target_value("SELECT key || ' ' || op || ' ' || mapping || ' ' || sqlstate FROM "
                         "authsync.dead_letter") == "poison upsert public.users 23514");
    CHECK(f.target_value("SELECT payload->>'display_name' FROM authsync.dead_letter") == "evil");
    CHECK(f.status()["counters"]["dead_letters"] == 1);
    auto metrics = test::run_shell_output("curl -s -m 5 " + f.status_url() + "/metrics");
    CHECK_THAT(metrics, Catch::Contains("authsync_dead_letters_total 1"));

    // Still rejected: retry keeps it and says so.
    auto out = test::run_cli("dead-letter retry --config " + f.config_path());
    CHECK(out.rc == 1);
    CHECK_THAT(out.text, Catch::Contains("0 applied, 1 still failing"));
    CHECK(f.target_value("SELECT attempts FROM authsync.dead_letter") == "2");
    out = test::run_cli("dead-letter list --config " + f.config_path());
    CHECK_THAT(out.text, Catch::Contains("poison") && Catch::Contains("1 dead letter(s)") &&
                             !Catch::Contains("display_name"));
    // Fixed on the target: retry applies it.
    f.target().exec("ALTER TABLE neon_auth.users_sync DROP CONSTRAINT no_evil");
    out = test::run_cli("dead-letter retry --config " + f.config_path());
    CHECK(out.rc == 0);
    CHECK_THAT(out.text, Catch::Contains("1 applied, 0 still failing"));
    CHECK(f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'poison'") == "evil");
    CHECK(f.target_value("SELECT count(*) FROM authsync.dead_letter") == "0");
    // A delete can be dead-lettered too, and the stream goes on.
    f.target().exec(
        "CREATE FUNCTION public.no_delete() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN IF NEW.deleted_at IS NOT NULL THEN RAISE EXCEPTION 'kept'; END IF; "
        "RETURN NEW; END $$; CREATE TRIGGER no_delete BEFORE UPDATE ON neon_auth.users_sync "
        "FOR EACH ROW EXECUTE FUNCTION public.no_delete()");
    p.exec("DELETE FROM public.users WHERE id = 'good1'");
    p.exec("INSERT INTO public.users (id, name) VALUES ('after', 'c')");
    REQUIRE(f.wait_caught_up());
    CHECK(f.target_value("SELECT key || ' ' || op || ' ' || sqlstate FROM authsync.dead_letter") ==
          "good1 delete P0001");
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE id = 'after'") == "1");
    CHECK(f.stop() == 0);
}

TEST_CASE("dead-letter retry never writes back a change older than what the target holds",
          "[poison][integration]") {
    SyncFixture f(dead_letter_options());
    f.start();
    auto p = f.provider();
    forbid_evil(f);
    p.exec("INSERT INTO public.users (id, name) VALUES ('u', 'first')");
    p.exec("UPDATE public.users SET name = 'evil' WHERE id = 'u'");  // rejected, set aside
    // (Waited for: in one batch the two updates would collapse into the last.)
    REQUIRE(wait_until(
        [&] { return f.target_value("SELECT count(*) FROM authsync.dead_letter") == "1"; }));
    p.exec("UPDATE public.users SET name = 'latest' WHERE id = 'u'");  // applied after it
    REQUIRE(f.wait_caught_up());
    CHECK(f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'u'") == "latest");
    CHECK(f.target_value("SELECT count(*) FROM authsync.dead_letter") == "1");
    f.target().exec("ALTER TABLE neon_auth.users_sync DROP CONSTRAINT no_evil");
    auto out = test::run_cli("dead-letter retry --config " + f.config_path());
    CHECK(out.rc == 0);
    CHECK_THAT(out.text, Catch::Contains("0 applied, 0 still failing; 1 superseded"));
    CHECK(f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'u'") == "latest");
    CHECK(f.target_value("SELECT count(*) FROM authsync.dead_letter") == "0");
    CHECK(f.stop() == 0);
}

TEST_CASE("a dead letter names its own source transaction, not the last one of its batch",
          "[poison][integration]") {
    // A backlog: the slow first transaction goes alone, and the three behind it, received while
    // it executes, share the next batch, whose last transaction commits after the poison one.
    SyncFixture f(dead_letter_options());
    f.start();
    REQUIRE(f.wait_caught_up());
    forbid_evil(f);
    f.target().exec(
        "CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.raw_json->>'display_name' = 'slow' THEN PERFORM pg_sleep(1); END IF; "
        "RETURN NEW; END $$; CREATE TRIGGER slow BEFORE INSERT ON neon_auth.users_sync "
        "FOR EACH ROW EXECUTE FUNCTION public.slow()");
    CHECK(f.stop() == 0);
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name) VALUES ('first', 'slow')");
    const auto before = f.provider_value("SELECT pg_current_wal_lsn()");
    p.exec("INSERT INTO public.users (id, name) VALUES ('poison', 'evil')");
    const auto after = f.provider_value("SELECT pg_current_wal_lsn()");
    p.exec("INSERT INTO public.users (id, name) VALUES ('later1', 'a')");
    p.exec("INSERT INTO public.users (id, name) VALUES ('later2', 'b')");
    f.start();
    REQUIRE(f.wait_caught_up());
    CHECK(f.target_value("SELECT string_agg(id, ',' ORDER BY id) FROM neon_auth.users_sync") ==
          "first,later1,later2");
    // Its commit record lies between the two positions read around it; the batch's last
    // transaction committed after both.
    CHECK(f.target_value("SELECT key || ' ' || (lsn > '" + before + "' AND lsn < '" + after +
                         "') FROM authsync.dead_letter") == "poison true");
    CHECK(f.stop() == 0);
}

TEST_CASE(
    "a value the target cannot convert stops authsync with its key and SQLSTATE, never the value",
    "[poison][integration]") {
    SyncFixture f(bigint_poison_options());
    f.start();
    f.provider().exec(
        "INSERT INTO public.users (id, name, bio) VALUES ('bigint-key', 'a', 'Leak-7Qx-value')");
    CHECK(f.process().wait(20s) == 1);
    auto log = f.process().log();
    INFO(log);
    CHECK_THAT(log, Catch::Contains("public.users key bigint-key") && Catch::Contains("22P02"));
    CHECK_THAT(log, Catch::Contains("invalid_text_representation"));
    CHECK_THAT(log, !Catch::Contains("Leak-7Qx"));
}

TEST_CASE(
    "dead-lettered conversion errors keep the server's message in the target only, and a "
    "newline in a value or key forges no log line",
    "[poison][integration]") {
    auto options = bigint_poison_options();
    options.extra_yaml = "apply:\n  on_error: dead_letter\n";
    SyncFixture f(options);
    f.start();
    auto p = f.provider();
    p.exec("INSERT INTO public.users (id, name, bio) VALUES ('dl-1', 'a', 'Leak-8Qy-value')");
    p.exec(
        "INSERT INTO public.users (id, name, bio) VALUES ('dl-2', 'b', "
        "E'x\\n2030-01-01T00:00:00.000+0000 error [engine] forged by a value')");
    p.exec(
        "INSERT INTO public.users (id, name, bio) VALUES "
        "(E'dl-3\\n2030-01-01T00:00:00.000+0000 error [engine] forged by a key', 'c', 'zzz')");
    p.exec("INSERT INTO public.users (id, name, bio) VALUES ('good', 'd', '1700000000000')");
    REQUIRE(wait_until([&] {
        return f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE id = 'good'") == "1";
    }));
    CHECK(f.target_value("SELECT count(*) FROM authsync.dead_letter WHERE sqlstate = '22P02'") ==
          "3");
    // The target holds the data anyway: there the server's own message stays whole.
    CHECK_THAT(f.target_value("SELECT error FROM authsync.dead_letter WHERE key = 'dl-1'"),
               Catch::Contains("invalid input syntax for type bigint: \"Leak-8Qy-value\""));
    // A trigger's RAISE may quote the row under any SQLSTATE, here a class 23 one. (Generated
    // columns are not computed yet in a BEFORE trigger: it reads raw_json.)
    f.target().exec(
        "CREATE FUNCTION public.raise_name() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.raw_json->>'display_name' = 'Raise-9Qz' THEN RAISE EXCEPTION 'name % "
        "refused', NEW.raw_json->>'display_name' USING "
        "ERRCODE = 'unique_violation'; END IF; RETURN NEW; END $$; CREATE TRIGGER raise_name "
        "BEFORE INSERT ON neon_auth.users_sync FOR EACH ROW EXECUTE FUNCTION public.raise_name()");
    p.exec("INSERT INTO public.users (id, name, bio) VALUES ('dl-4', 'Raise-9Qz', '1')");
    REQUIRE(wait_until([&] {
        return f.target_value("SELECT sqlstate FROM authsync.dead_letter WHERE key = 'dl-4'") ==
               "23505";
    }));
    CHECK_THAT(f.target_value("SELECT error FROM authsync.dead_letter WHERE key = 'dl-4'"),
               Catch::Contains("name Raise-9Qz refused"));
    auto status = test::run_shell_output("curl -s -m 5 " + f.status_url() + "/status");
    CHECK_THAT(status, !Catch::Contains("Leak-8Qy"));
    CHECK(f.stop() == 0);
    auto log = f.process().log();
    INFO(log);
    CHECK_THAT(log, Catch::Contains("dead-lettered the change to public.users key dl-1") &&
                        Catch::Contains("22P02"));
    CHECK_THAT(log, !Catch::Contains("Leak-8Qy"));
    CHECK_THAT(log, Catch::Contains("key dl-4: unique_violation (SQLSTATE 23505; the server's "
                                    "message is withheld"));
    CHECK_THAT(log, !Catch::Contains("Raise-9Qz"));
    CHECK_THAT(log, !Catch::Contains("forged by a value"));
    // The key is logged (it names the user), its newline escaped.
    CHECK_THAT(log, Catch::Contains("key dl-3\\n2030-01-01T00:00:00.000+0000 error [engine] "
                                    "forged by a key"));
    CHECK(forged_lines(log).empty());
}
