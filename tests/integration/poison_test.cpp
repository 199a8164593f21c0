// Changes the target rejects: stop naming the key, or set them aside in authsync.dead_letter.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using test::SyncFixture;
using test::wait_until;

namespace {

std::string run_cli(const std::string& args) {
    return test::run_shell_output(std::string(AUTHSYNC_EXE) + " " + args + " 2>&1; echo rc=$?");
}

test::SyncOptions dead_letter_options() {
    test::SyncOptions options;
    options.extra_yaml = "apply:\n  on_error: dead_letter\n";
    return options;
}

// The target rejects any user named 'evil' (SQLSTATE 23514).
void forbid_evil(SyncFixture& f) {
    f.target().exec("ALTER TABLE neon_auth.users_sync ADD CONSTRAINT no_evil CHECK (name <> 'evil')");
}

}  // namespace

TEST_CASE("a rejected change stops authsync with its key and SQLSTATE, never its values", "[poison][integration]") {
    SyncFixture f;
    f.start();
    auto p = f.provider();
    forbid_evil(f);
    // A batch of good changes around the poison one: the whole transaction must stay out.
    p.exec("BEGIN; INSERT INTO public.users (id, name) VALUES ('good1', 'a'); "
           "INSERT INTO public.users (id, name, email) VALUES ('poison-key', 'evil', 'pii@example.com'); "
           "INSERT INTO public.users (id, name) VALUES ('good2', 'b'); COMMIT");
    CHECK(f.process().wait(20s) == 1);
    auto log = f.process().log();
    CHECK_THAT(log, Catch::Contains("public.users key poison-key") && Catch::Contains("23514"));
    CHECK_THAT(log, !Catch::Contains("pii@example.com"));
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync") == "0");
}

TEST_CASE("with on_error dead_letter a rejected change is set aside and the rest applies", "[poison][integration]") {
    SyncFixture f(dead_letter_options());
    f.start();
    auto p = f.provider();
    forbid_evil(f);
    p.exec("BEGIN; INSERT INTO public.users (id, name) VALUES ('good1', 'a'); "
           "INSERT INTO public.users (id, name) VALUES ('poison', 'evil'); "
           "INSERT INTO public.users (id, name) VALUES ('good2', 'b'); COMMIT");
    REQUIRE(f.wait_caught_up());
    CHECK(f.target_value("SELECT string_agg(id, ',' ORDER BY id) FROM neon_auth.users_sync") == "good1,good2");
    CHECK(f.target_value("SELECT key || ' ' || op || ' ' || mapping || ' ' || sqlstate FROM authsync.dead_letter") ==
          "poison upsert public.users 23514");
    CHECK(f.target_value("SELECT payload->>'display_name' FROM authsync.dead_letter") == "evil");
    auto status = nlohmann::json::parse(test::run_shell_output("curl -s -m 5 " + f.status_url() + "/status"));
    CHECK(status["counters"]["dead_letters"] == 1);
    auto metrics = test::run_shell_output("curl -s -m 5 " + f.status_url() + "/metrics");
    CHECK_THAT(metrics, Catch::Contains("authsync_dead_letters_total 1"));

    // Still rejected: retry keeps it and says so.
    auto out = run_cli("dead-letter retry --config " + f.config_path());
    CHECK_THAT(out, Catch::Contains("0 applied, 1 still failing") && Catch::Contains("rc=1"));
    CHECK(f.target_value("SELECT attempts FROM authsync.dead_letter") == "2");
    out = run_cli("dead-letter list --config " + f.config_path());
    CHECK_THAT(out, Catch::Contains("poison") && Catch::Contains("1 dead letter(s)") &&
                        !Catch::Contains("display_name"));
    // Fixed on the target: retry applies it.
    f.target().exec("ALTER TABLE neon_auth.users_sync DROP CONSTRAINT no_evil");
    out = run_cli("dead-letter retry --config " + f.config_path());
    CHECK_THAT(out, Catch::Contains("1 applied, 0 still failing") && Catch::Contains("rc=0"));
    CHECK(f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'poison'") == "evil");
    CHECK(f.target_value("SELECT count(*) FROM authsync.dead_letter") == "0");
    // A delete can be dead-lettered too, and the stream goes on.
    f.target().exec("CREATE FUNCTION public.no_delete() RETURNS trigger LANGUAGE plpgsql AS $$ "
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
    auto out = run_cli("dead-letter retry --config " + f.config_path());
    CHECK_THAT(out, Catch::Contains("0 applied, 0 still failing; 1 superseded") &&
                        Catch::Contains("rc=0"));
    CHECK(f.target_value("SELECT name FROM neon_auth.users_sync WHERE id = 'u'") == "latest");
    CHECK(f.target_value("SELECT count(*) FROM authsync.dead_letter") == "0");
    CHECK(f.stop() == 0);
}
