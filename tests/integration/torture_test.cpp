// Crash torture: a mixed workload while authsync is killed with SIGKILL at random moments and
// restarted, again and again. At the end the target must equal the provider, no deletion may
// be lost, and no change may have been applied twice.
#include <catch2/catch.hpp>

#include <atomic>
#include <random>
#include <thread>

#include "sync_fixture.hpp"

using namespace authsync;
using namespace std::chrono_literals;
using test::SyncFixture;
using test::wait_until;

namespace {

void torture(std::size_t lanes) {
    test::SyncOptions options;
    options.status_interval = "300ms";
    if (lanes > 1) options.extra_yaml = "apply:\n  lanes: " + std::to_string(lanes) + "\n";
    SyncFixture f(options);
    // Every write takes a fresh version from one sequence, so each applied (id, version) pair
    // must appear once in the target's audit, whatever collapsed in between.
    f.provider().exec("CREATE SEQUENCE public.version_seq");
    f.start();
    f.target().exec(R"(
        CREATE TABLE public.applied (id text, version bigint);
        CREATE FUNCTION public.record_applied() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO public.applied VALUES (NEW.id, (NEW.raw_json->>'version')::bigint); RETURN NEW; END $$;
        CREATE TRIGGER applied_insert AFTER INSERT ON neon_auth.users_sync
          FOR EACH ROW EXECUTE FUNCTION public.record_applied();
        CREATE TRIGGER applied_update AFTER UPDATE ON neon_auth.users_sync
          FOR EACH ROW WHEN (OLD.raw_json IS DISTINCT FROM NEW.raw_json)
          EXECUTE FUNCTION public.record_applied();
    )");

    std::atomic<bool> done{false};
    std::atomic<int> transactions{0}, large{0}, truncates{0};
    std::thread workload([&] {
        auto conn = f.provider();
        std::mt19937 rng(7);
        std::vector<int> live, deleted;
        int next = 0;
        auto pick = [&](std::vector<int>& v) {
            std::uniform_int_distribution<std::size_t> d(0, v.size() - 1);
            std::size_t i = d(rng);
            int id = v[i];
            v[i] = v.back();
            v.pop_back();
            return id;
        };
        const auto started = std::chrono::steady_clock::now();
        while (!done) {
            const auto elapsed = std::chrono::steady_clock::now() - started;
            int op = std::uniform_int_distribution<int>(0, 99)(rng);
            if (large < (elapsed / 8s) + 1 && large < 3) {
                // A 50,000-row transaction.
                int from = next;
                next += 50000;
                conn.exec(
                    "INSERT INTO public.users (id, name, version) SELECT 'c' || i, 'bulk', "
                    "nextval('public.version_seq') FROM generate_series(" +
                    std::to_string(from) + ", " + std::to_string(next - 1) + ") i");
                for (int i = from; i < next; i += 97) live.push_back(i);  // a sample to touch later
                ++large;
            } else if (truncates == 0 && elapsed > 15s) {
                conn.exec("TRUNCATE public.users");
                deleted.insert(deleted.end(), live.begin(), live.end());
                live.clear();
                ++truncates;
            } else if (op < 30 || live.empty()) {
                const bool toast = op < 5;
                conn.exec("INSERT INTO public.users (id, name, bio, version) VALUES ('c" +
                          std::to_string(next) + "', 'new', " +
                          (toast ? "(SELECT string_agg(md5(random()::text), '') FROM "
                                   "generate_series(1, 400))"
                                 : "'short'") +
                          ", nextval('public.version_seq'))");
                live.push_back(next++);
            } else if (op < 65) {
                int id = live[std::uniform_int_distribution<std::size_t>(0, live.size() - 1)(rng)];
                const bool touch_bio = op < 45;
                conn.exec(std::string("UPDATE public.users SET name = 'upd', version = "
                                      "nextval('public.version_seq')") +
                          (touch_bio ? ", bio = md5(random()::text)" : "") + " WHERE id = 'c" +
                          std::to_string(id) + "'");
            } else if (op < 85) {
                int id = pick(live);
                conn.exec("DELETE FROM public.users WHERE id = 'c" + std::to_string(id) + "'");
                deleted.push_back(id);
            } else if (!deleted.empty()) {
                int id = pick(deleted);
                conn.exec("INSERT INTO public.users (id, name, version) VALUES ('c" +
                          std::to_string(id) +
                          "', 'again', nextval('public.version_seq')) "
                          "ON CONFLICT (id) DO NOTHING");
                live.push_back(id);
            }
            ++transactions;
            // A busy provider, not a flood: the catch-up after the kills stays bounded.
            std::this_thread::sleep_for(std::chrono::microseconds(500));
        }
    });

    std::mt19937 rng(11);
    int kills = 0;
    for (; kills < 20; ++kills) {
        std::this_thread::sleep_for(
            std::chrono::milliseconds(std::uniform_int_distribution<int>(300, 1800)(rng)));
        f.kill9();
        f.start_unchecked();
    }
    done = true;
    workload.join();
    INFO("transactions: " << transactions << ", large: " << large << ", truncates: " << truncates);
    CHECK(kills == 20);
    CHECK(large >= 1);
    CHECK(truncates == 1);

    REQUIRE(f.wait_caught_up(300s));
    f.wait_streaming();  // the last restart handles the SIGTERM at the end
    const char* provider_state =
        "SELECT md5(coalesce(string_agg(id || ':' || name || ':' || version || ':' || "
        "md5(coalesce(bio, '')), ',' ORDER BY id), '')) FROM public.users";
    const char* target_state =
        "SELECT md5(coalesce(string_agg(id || ':' || (raw_json->>'display_name') || ':' || "
        "(raw_json->>'version') || ':' || md5(coalesce(raw_json->>'bio', '')), ',' ORDER BY id), "
        "'')) FROM neon_auth.users_sync WHERE deleted_at IS NULL";
    CHECK(f.provider_value(provider_state) == f.target_value(target_state));
    CHECK(f.provider_value("SELECT count(*) FROM public.users") ==
          f.target_value("SELECT count(*) FROM neon_auth.users_sync WHERE deleted_at IS NULL"));
    CHECK(
        f.target_value("SELECT count(*) FROM (SELECT id, version FROM public.applied GROUP BY 1, 2 "
                       "HAVING count(*) > 1) d") == "0");
    CHECK(f.stop() == 0);
}

}  // namespace

TEST_CASE("twenty SIGKILLs under a mixed workload lose nothing and apply nothing twice",
          "[torture][integration]") {
    torture(1);
}

// Lanes commit their shares of a batch apart: a kill between two lanes' commits leaves them at
// different checkpoints, and each must skip exactly what its own covers.
TEST_CASE("with four apply lanes twenty SIGKILLs lose nothing and apply nothing twice",
          "[torture][lanes][integration]") {
    torture(4);
}
