#include "fanout_support.hpp"

#include <catch2/catch.hpp>

namespace authsync::test::fanout {

std::string tenant(int t) {
    return "tenant" + std::to_string(t);
}

const char* const kProviderDdl = R"(
    CREATE TABLE public.users (
        id text PRIMARY KEY,
        tenant text NOT NULL,
        name text,
        email text,
        version int NOT NULL DEFAULT 1);
    CREATE TABLE public.unrelated (id serial PRIMARY KEY, note text);
)";

FanoutTargets make_targets(const std::string& on_delete, int count,
                           std::vector<PgCluster*> clusters) {
    if (clusters.empty()) clusters.push_back(&target_cluster());
    FanoutTargets out;
    for (int t = 0; t < count; ++t) {
        auto* cluster = clusters[t % clusters.size()];
        auto db = cluster->create_database("tenant");
        out.databases.push_back({cluster, db});
        out.yaml += "  - name: " + tenant(t) + "\n    dsn: \"" + cluster->dsn(db) +
                    "\"\n    mappings:\n      - source: public.users\n        key: id\n"
                    "        on_delete: " +
                    on_delete + "\n        scope: {tenant: " + tenant(t) +
                    "}\n        fields: {display_name: name, primary_email: email, version: "
                    "version}\n";
    }
    return out;
}

std::map<std::string, std::string> provider_rows(SyncFixture& f, int t) {
    std::map<std::string, std::string> rows;
    auto r = f.provider().exec_params(
        "SELECT id, concat_ws('|', name, email, version) FROM public.users WHERE tenant = $1",
        pg::params(tenant(t)));
    for (int i = 0; i < r.rows(); ++i) rows[std::string(r.get(i, 0))] = std::string(r.get(i, 1));
    return rows;
}

bool provisioned(pg::Connection& c) {
    return c.exec("SELECT to_regclass('neon_auth.users_sync') IS NOT NULL").get(0, 0) == "t";
}

std::map<std::string, std::string> target_rows(const TargetDb& db) {
    std::map<std::string, std::string> rows;
    auto c = db.connect();
    if (!provisioned(c)) return rows;
    auto r = c.exec(
        "SELECT id, concat_ws('|', raw_json->>'display_name', raw_json->>'primary_email', "
        "raw_json->>'version') FROM neon_auth.users_sync WHERE deleted_at IS NULL");
    for (int i = 0; i < r.rows(); ++i) rows[std::string(r.get(i, 0))] = std::string(r.get(i, 1));
    return rows;
}

std::set<std::string> all_ids(const TargetDb& db) {
    std::set<std::string> ids;
    auto c = db.connect();
    if (!provisioned(c)) return ids;
    auto r = c.exec("SELECT id FROM neon_auth.users_sync");
    for (int i = 0; i < r.rows(); ++i) ids.insert(std::string(r.get(i, 0)));
    return ids;
}

bool targets_match(SyncFixture& f, const FanoutTargets& targets) {
    for (std::size_t t = 0; t < targets.databases.size(); ++t) {
        if (provider_rows(f, static_cast<int>(t)) != target_rows(targets.databases[t])) {
            return false;
        }
    }
    return true;
}

bool tenants_match(SyncFixture& f, const FanoutTargets& targets, const std::vector<int>& ts) {
    return std::all_of(ts.begin(), ts.end(), [&](int t) {
        return provider_rows(f, t) == target_rows(targets.databases[t]);
    });
}

void check_no_foreign_rows(SyncFixture& f, const FanoutTargets& targets) {
    for (std::size_t t = 0; t < targets.databases.size(); ++t) {
        auto mine = provider_rows(f, static_cast<int>(t));
        for (const auto& id : all_ids(targets.databases[t])) {
            INFO("target " << t << " id " << id);
            CHECK(mine.count(id) == 1);
        }
    }
}

SyncOptions tenant_options(const FanoutTargets& targets, std::string extra_yaml) {
    SyncOptions options;
    options.provider_ddl = kProviderDdl;
    options.targets_yaml = targets.yaml;
    options.extra_yaml = std::move(extra_yaml);
    return options;
}

void audit_applications(const TargetDb& db) {
    db.connect().exec(R"(
        CREATE TABLE public.applied (id text, version bigint);
        CREATE FUNCTION public.record_applied() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO public.applied VALUES (NEW.id, (NEW.raw_json->>'version')::bigint);
        RETURN NEW; END $$;
        CREATE TRIGGER applied AFTER INSERT OR UPDATE ON neon_auth.users_sync
          FOR EACH ROW EXECUTE FUNCTION public.record_applied();
    )");
}

int applied_twice(const TargetDb& db) {
    auto r = db.connect().exec(
        "SELECT count(*) FROM (SELECT 1 FROM public.applied GROUP BY id, version HAVING count(*) "
        "> 1) AS twice");
    return std::stoi(std::string(r.get(0, 0)));
}

int applications(const TargetDb& db) {
    auto r = db.connect().exec("SELECT count(*) FROM public.applied");
    return std::stoi(std::string(r.get(0, 0)));
}

void seed_users(SyncFixture& f, int tenants) {
    f.provider().exec(
        "INSERT INTO public.users (id, tenant, name) SELECT 'u' || i, 'tenant' || (i % " +
        std::to_string(tenants) + "), 'name ' || i FROM generate_series(1, 60) AS i");
}

void Workload::run(int statements, const std::function<void(int)>& each) {
    auto p = f_.provider();
    for (int i = 0; i < statements; ++i) {
        const auto id = "u" + std::to_string(1 + pick(60));
        switch (pick(6)) {
            case 0:
                p.exec("INSERT INTO public.users (id, tenant, name) VALUES ('n" +
                       std::to_string(next_id_++) + "', '" + tenant(pick(tenants_)) +
                       "', 'added')");
                break;
            case 1: p.exec("DELETE FROM public.users WHERE id = '" + id + "'"); break;
            case 2:
                p.exec("UPDATE public.users SET tenant = '" + tenant(pick(tenants_)) +
                       "', version = version + 1 WHERE id = '" + id + "'");
                break;
            case 3:
                p.exec("BEGIN; UPDATE public.users SET version = version + 1, name = 'b" +
                       std::to_string(i) + "' WHERE tenant = '" + tenant(pick(tenants_)) +
                       "'; INSERT INTO public.users (id, tenant) VALUES ('n" +
                       std::to_string(next_id_++) + "', '" + tenant(pick(tenants_)) + "'); COMMIT");
                break;
            default:
                p.exec("UPDATE public.users SET version = version + 1, email = 'e" +
                       std::to_string(i) + "' WHERE id = '" + id + "'");
        }
        if (each) each(i);
    }
}

}  // namespace authsync::test::fanout
