// The generic preset: any users table, columns renamed through options, a missing optional
// column, against a reference computed on the provider after a randomized workload.
#include <catch2/catch.hpp>

#include "preset_support.hpp"
#include "sync_fixture.hpp"

namespace authsync::test {

namespace {

// No name column: display_name is null throughout.
constexpr const char* kDdl = R"(
    CREATE TABLE public.members (
        member_id bigint PRIMARY KEY,
        mail text,
        joined timestamptz NOT NULL DEFAULT '2024-01-02 03:04:05.678+00',
        password_hash text NOT NULL DEFAULT 'secret');
    CREATE PROCEDURE members_workload(p_seed double precision, p_ops int) LANGUAGE plpgsql AS $$
    DECLARE
        v_id bigint;
        v_x double precision;
    BEGIN
        PERFORM setseed(p_seed);
        FOR i IN 1 .. p_ops LOOP
            v_id := 1 + floor(random() * 400)::bigint;
            v_x := random();
            IF v_x < 0.4 THEN
                INSERT INTO public.members (member_id, mail, joined)
                VALUES (v_id, 'm' || v_id || '@example.com',
                        timestamptz '2024-01-01 00:00:00+00' + random() * interval '700 days')
                ON CONFLICT (member_id) DO UPDATE SET mail = EXCLUDED.mail;
            ELSIF v_x < 0.7 THEN
                UPDATE public.members SET mail = CASE WHEN random() < 0.2 THEN NULL
                    ELSE 'x' || floor(random() * 1000) || '@example.org' END WHERE member_id = v_id;
            ELSIF v_x < 0.8 THEN
                UPDATE public.members SET password_hash = md5(random()::text) WHERE member_id = v_id;
            ELSE
                DELETE FROM public.members WHERE member_id = v_id;
            END IF;
            COMMIT;
        END LOOP;
    END $$;
)";

constexpr const char* kReference = R"(
    SELECT member_id::text, jsonb_build_object(
        'id', member_id::text, 'primary_email', mail, 'display_name', NULL::text,
        'signed_up_at_millis', floor(extract(epoch FROM joined) * 1000)::bigint)::text
    FROM public.members)";

}  // namespace

TEST_CASE("generic: a renamed users table without a name column stays equal to the provider",
          "[integration][generic]") {
    SyncOptions o;
    o.provider_ddl = kDdl;
    o.mappings_yaml =
        "  - preset: generic\n"
        "    preset_options: {table: members, id_column: member_id, email_column: mail,\n"
        "                     created_at_column: joined}\n";
    o.log_level = "info";
    SyncFixture f(o);
    f.provider().exec("CALL members_workload(0.1, 300)");
    f.start();
    f.provider().exec("CALL members_workload(0.2, 2000)");
    REQUIRE(f.wait_caught_up(std::chrono::seconds(60)));
    require_same_rows(
        "users_sync", sorted_rows(f.provider().exec(kReference)),
        sorted_rows(f.target().exec("SELECT id, raw_json::text FROM "
                                    "neon_auth.users_sync WHERE deleted_at IS NULL")));
    CHECK(f.provider_value("SELECT array_to_string(attnames, ',') FROM pg_publication_tables "
                           "WHERE pubname = 'authsync'") == "member_id,mail,joined");
    CHECK(f.stop() == 0);
}

TEST_CASE("generic: check names a sign-up column that is not a time", "[integration][generic]") {
    SyncOptions o;
    o.provider_ddl =
        "CREATE TABLE public.accounts (id bigint PRIMARY KEY, email text, "
        "created_at bigint)";
    o.mappings_yaml = "  - preset: generic\n    preset_options: {table: accounts}\n";
    SyncFixture f(o);
    auto out = run_shell_output(std::string(AUTHSYNC_EXE) + " check --config " + f.config_path() +
                                " 2>&1; echo \"rc=$?\"");
    INFO(out);
    CHECK(out.find("column \"created_at\" of \"public\".\"accounts\" is bigint, but preset "
                   "generic reads it as a time") != std::string::npos);
    CHECK(out.find("rc=1") != std::string::npos);
}

}  // namespace authsync::test
