// Apply lanes (apply.lanes): several writers into one target, each key in one lane.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "authsync/pipeline/lanes.hpp"
#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using test::SyncFixture;
using test::wait_until;

namespace {

test::SyncOptions with_lanes(std::size_t lanes) {
    test::SyncOptions options;
    options.extra_yaml = "apply:\n  lanes: " + std::to_string(lanes) + "\n";
    return options;
}

// Rewrites the fixture's config for another lane count.
void set_lanes(SyncFixture& f, std::size_t from, std::size_t to) {
    std::ifstream in(f.config_path());
    std::stringstream text;
    text << in.rdbuf();
    auto config = text.str();
    const auto old = "lanes: " + std::to_string(from);
    const auto at = config.find(old);
    REQUIRE(at != std::string::npos);
    config.replace(at, old.size(), "lanes: " + std::to_string(to));
    std::ofstream(f.config_path()) << config;
}

std::string lane_rows(SyncFixture& f) {
    return f.target_value(
        "SELECT string_agg(slot || '=' || end_lsn, ',' ORDER BY slot) FROM "
        "authsync.checkpoint WHERE slot = '" +
        f.slot() + "' OR slot LIKE '" + f.slot() + "/lane%'");
}

}  // namespace

TEST_CASE("the target computes the same lane for a key as authsync", "[lanes][integration]") {
    SyncFixture f;
    auto target = f.target();
    for (std::size_t lanes : {2u, 3u, 4u, 7u}) {
        for (int i = 0; i < 200; ++i) {
            const std::string key = "user-" + std::to_string(i * 7919) + (i % 3 ? "é" : "");
            const auto lane = pipeline::lane_of(key, lanes);
            const auto sql = "SELECT " + pipeline::lane_condition("$1::text", lane, lanes);
            auto r = target.exec_params(sql, pg::params(key));
            INFO("key " << key << " lanes " << lanes);
            REQUIRE(r.get(0, 0) == "t");
        }
    }
}

TEST_CASE("per-key order holds across four lanes under heavy updates of few users",
          "[lanes][integration]") {
    SyncFixture f(with_lanes(4));
    f.provider().exec("CREATE SEQUENCE public.version_seq");
    f.start();
    // Every applied version of a user, in the order the target applied them.
    f.target().exec(R"(
        CREATE TABLE public.applied (seq bigserial, id text, version bigint);
        CREATE FUNCTION public.record_applied() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO public.applied (id, version) VALUES (NEW.id, (NEW.raw_json->>'version')::bigint); RETURN NEW; END $$;
        CREATE TRIGGER applied_insert AFTER INSERT OR UPDATE ON neon_auth.users_sync
          FOR EACH ROW EXECUTE FUNCTION public.record_applied();
    )");
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, name, version) SELECT 'k' || i, 'start', "
        "nextval('public.version_seq') FROM generate_series(1, 8) i");
    // 4,000 one-row transactions over 8 users, and some that touch several users at once.
    for (int i = 0; i < 4000; ++i) {
        if (i % 50 == 0) {
            p.exec(
                "UPDATE public.users SET version = nextval('public.version_seq'), name = 'multi'");
        } else {
            p.exec("UPDATE public.users SET version = nextval('public.version_seq'), name = 'u" +
                   std::to_string(i) + "' WHERE id = 'k" + std::to_string(i % 8 + 1) + "'");
        }
    }
    REQUIRE(f.wait_caught_up(120s));
    // Each user's versions arrive in increasing order, and the last is the provider's.
    CHECK(f.target_value("SELECT count(*) FROM (SELECT version < lag(version) OVER (PARTITION BY "
                         "id ORDER BY seq) AS back FROM public.applied) a WHERE back") == "0");
    CHECK(f.provider_value("SELECT string_agg(id || ':' || version || ':' || name, ',' ORDER BY "
                           "id) FROM public.users") ==
          f.target_value("SELECT string_agg(id || ':' || (raw_json->>'version') || ':' || "
                         "(raw_json->>'display_name'), ',' ORDER BY id) FROM "
                         "neon_auth.users_sync WHERE deleted_at IS NULL"));
    // The users were spread over the lanes: several lanes committed, each in its own row.
    std::set<std::size_t> lanes;
    for (int i = 1; i <= 8; ++i) lanes.insert(pipeline::lane_of("k" + std::to_string(i), 4));
    REQUIRE(lanes.size() > 1);
    CHECK(std::stoi(f.target_value("SELECT count(*) FROM authsync.checkpoint WHERE slot LIKE '" +
                                   f.slot() + "%' AND end_lsn > '0/0'")) >= 2);
    CHECK(f.target_value("SELECT count(*) FROM authsync.checkpoint WHERE slot LIKE '" + f.slot() +
                         "%'") == "4");
    CHECK(f.stop() == 0);
}

TEST_CASE("a truncate with four lanes soft-deletes every user, whatever its lane",
          "[lanes][integration]") {
    SyncFixture f(with_lanes(4));
    f.start();
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, name) SELECT 't' || i, 'x' FROM generate_series(1, 200) i");
    REQUIRE(f.wait_caught_up());
    p.exec(
        "BEGIN; INSERT INTO public.users (id, name) VALUES ('before', 'b'); "
        "TRUNCATE public.users; INSERT INTO public.users (id, name) VALUES ('after', 'a'); "
        "COMMIT");
    REQUIRE(f.wait_caught_up());
    CHECK(f.target_value("SELECT string_agg(id, ',') FROM neon_auth.users_sync WHERE deleted_at "
                         "IS NULL") == "after");
    CHECK(f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE deleted_at IS NOT "
                         "NULL") == "201");
    CHECK(f.stop() == 0);
}

TEST_CASE(
    "a clean stop leaves the lanes together, so the lane count can change; lanes left "
    "apart stop a run with another count",
    "[lanes][integration]") {
    SyncFixture f(with_lanes(4));
    f.start();
    auto p = f.provider();
    p.exec(
        "INSERT INTO public.users (id, name) SELECT 'c' || i, 'x' FROM generate_series(1, 50) i");
    REQUIRE(f.wait_caught_up());
    p.exec("UPDATE public.users SET name = 'y' WHERE id = 'c1'");  // one lane moves ahead
    REQUIRE(f.wait_caught_up());
    REQUIRE(f.stop() == 0);
    const auto rows = lane_rows(f);
    INFO(rows);
    CHECK(
        f.target_value("SELECT count(DISTINCT end_lsn) FROM authsync.checkpoint WHERE slot LIKE '" +
                       f.slot() + "%'") == "1");

    set_lanes(f, 4, 2);
    f.start();
    p.exec("UPDATE public.users SET name = 'z'");
    REQUIRE(f.wait_caught_up());
    CHECK(
        f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE raw_json->>'display_name' "
                       "= 'z'") == "50");
    CHECK(f.target_value("SELECT count(*) FROM authsync.checkpoint WHERE slot LIKE '" + f.slot() +
                         "%'") == "2");
    REQUIRE(f.stop() == 0);

    // As a crash between two lanes' commits leaves them.
    f.target().exec("UPDATE authsync.checkpoint SET end_lsn = end_lsn - 1 WHERE slot = '" +
                    f.slot() + "/lane1'");
    set_lanes(f, 2, 3);
    f.start_unchecked();
    CHECK(f.process().wait(30s) == 1);
    CHECK_THAT(f.process().log(), Catch::Contains("set apply.lanes back to 2"));
    set_lanes(f, 3, 2);
    f.start();
    CHECK(f.stop() == 0);
}
