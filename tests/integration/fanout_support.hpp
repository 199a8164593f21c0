// Fan-out test helpers shared by the in-process fan-out tests and the JetStream scale-out
// tests: tenants of a provider users table, their target databases, and comparisons.
#pragma once

#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "pg_cluster.hpp"
#include "sync_fixture.hpp"

namespace authsync::test::fanout {

inline constexpr int kTenants = 3;

std::string tenant(int t);

// A provider users table keyed by id alone: its tenant column is outside the replica
// identity, so the publication cannot filter it and the router scopes every row.
extern const char* const kProviderDdl;

// A target database: its server and name.
struct TargetDb {
    PgCluster* cluster = nullptr;
    std::string name;
    pg::Connection connect() const { return cluster->connect(name); }
};

struct FanoutTargets {
    std::vector<TargetDb> databases;
    std::string yaml;
};

// `count` targets, tenant i's in a database of clusters[i % clusters.size()] (default: the
// shared target server).
FanoutTargets make_targets(const std::string& on_delete, int count = kTenants,
                           std::vector<PgCluster*> clusters = {});
// id -> "name|email|version" of what the provider holds for tenant `t`.
std::map<std::string, std::string> provider_rows(SyncFixture& f, int t);
// A target that joins by SIGHUP has no table until its copy starts: it holds nothing yet.
bool provisioned(pg::Connection& c);
// The same of the live rows in target database `db`.
std::map<std::string, std::string> target_rows(const TargetDb& db);
// Every row, deleted or not, in target `db` (ids).
std::set<std::string> all_ids(const TargetDb& db);
bool targets_match(SyncFixture& f, const FanoutTargets& targets);
// Whether the targets of tenants `ts` each equal their tenant.
bool tenants_match(SyncFixture& f, const FanoutTargets& targets, const std::vector<int>& ts);
// No target holds a row of another tenant, live or deleted (on_delete: hard).
void check_no_foreign_rows(SyncFixture& f, const FanoutTargets& targets);

// Every application of a change to target `db` from now on, counted per (id, version): the
// Workload gives each change of a user a version of its own, so an (id, version) applied twice
// is a change applied twice (an upsert repeated, or an older change applied again). Needs
// users_sync in `db` (after its copy) and on_delete: hard (a soft delete rewrites the row).
void audit_applications(const TargetDb& db);
// (id, version) pairs applied more than once since audit_applications, and all applications.
int applied_twice(const TargetDb& db);
int applications(const TargetDb& db);

// The fixture's options for `targets` on kProviderDdl, with `extra_yaml` at the top level.
SyncOptions tenant_options(const FanoutTargets& targets, std::string extra_yaml = "");
// u1..u60 spread over `tenants` tenants.
void seed_users(SyncFixture& f, int tenants);

// A randomized workload on the provider: single statements, a user moved between tenants,
// and transactions that touch several tenants at once. `each(i)` runs after statement i of
// a run (e.g. to kill authsync mid-stream).
class Workload {
public:
    Workload(SyncFixture& f, int tenants, unsigned seed) : f_(f), tenants_(tenants), rng_(seed) {}
    void run(int statements, const std::function<void(int)>& each = {});

private:
    int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
    SyncFixture& f_;
    int tenants_;
    std::mt19937 rng_;
    int next_id_ = 1000;
};

}  // namespace authsync::test::fanout
