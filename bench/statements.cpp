// bench_statements: what one target statement form costs the target, on realistic users_sync
// rows. Issue 15 asks whether COPY into a temporary table, then one INSERT ... SELECT ... ON
// CONFLICT, beats authsync's `unnest` of text arrays; this measures both, the same `unnest`
// with binary array parameters (what authsync sends since), and the floor (the same rows already in
// the target as jsonb).
//
// Each form writes the same rows in batches (one transaction each, synchronous_commit off, as
// authsync's writer), first as new users (inserts), then again (every row a conflict: the
// update path). Reported per form and pass: wall seconds and the target backend's CPU seconds
// (/proc of its pid: run against a server on this machine). Run by bench/statements, which
// starts the server; never part of the tests.
#include <libpq-fe.h>

#include <unistd.h>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "authsync/apply/batch.hpp"
#include "authsync/engine/provisioning.hpp"
#include "authsync/mapping/mapper.hpp"

namespace {

using authsync::PgTimestamp;
using Clock = std::chrono::steady_clock;

struct Conn {
    PGconn* c = nullptr;
    explicit Conn(const std::string& dsn) : c(PQconnectdb(dsn.c_str())) {
        if (PQstatus(c) != CONNECTION_OK) throw std::runtime_error(PQerrorMessage(c));
    }
    ~Conn() { PQfinish(c); }
    std::string exec(const std::string& sql) {
        PGresult* r = PQexec(c, sql.c_str());
        check(r);
        std::string v = PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
        PQclear(r);
        return v;
    }
    void check(PGresult* r) {
        auto s = PQresultStatus(r);
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_COPY_IN) {
            std::string e = PQresultErrorMessage(r);
            PQclear(r);
            throw std::runtime_error(e);
        }
    }
};

// utime + stime of a process on this machine, in seconds.
double cpu_seconds(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(f, line);
    std::istringstream in(line.substr(line.rfind(')') + 2));
    std::string field;
    std::uint64_t ut = 0, st = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) ut = std::stoull(field);
        if (i == 15) st = std::stoull(field);
    }
    return static_cast<double>(ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// One W1-shaped user as authsync's mapping of bench/run's app.users writes it.
authsync::mapping::RowImage user(std::size_t i) {
    char uuid[40];
    std::snprintf(uuid, sizeof uuid, "%08zx-%04zx-4%03zx-8%03zx-%012zx",
                  i * 2654435761u % 4294967296u, i % 65536, i % 4096, (i / 7) % 4096,
                  static_cast<std::size_t>(i * 11400714819323198485ull % 281474976710656ull));
    const std::string n = std::to_string(i);
    const std::string plans[] = {"free", "pro", "team"};
    authsync::mapping::RowImage image;
    image.key = uuid;
    image.fields = {
        {"id", "\"" + image.key + "\""},
        {"primary_email", "\"user" + n + "@example.com\""},
        {"display_name", "\"User Name " + n + "\""},
        {"signed_up_at_millis", std::to_string(1764000000000 + i)},
        {"created_at", "\"2026-12-03T19:00:00.123456+00:00\""},
        {"updated_at", "\"2026-12-03T19:00:00.123456+00:00\""},
        {"client_metadata",
         "{\"plan\": \"" + plans[i % 3] +
             "\", \"tags\": [\"beta\", \"newsletter\"], \"locale\": \"en-US\", \"referrer\": "
             "\"https://www.example.com/landing/0123456789abcdef0123456789abcdef\", "
             "\"timezone\": \"Europe/Berlin\", \"avatar_url\": "
             "\"https://cdn.example.com/avatars/fedcba9876543210fedcba9876543210.png\", "
             "\"signup_source\": \"web\", \"marketing_opt_in\": " +
             std::string(i % 2 ? "false" : "true") + "}"},
        {"primary_email_verified", i % 3 ? "true" : "false"},
        {"login_count", std::to_string(i % 50)},
    };
    return image;
}

// A text[] parameter in binary, as authsync sends its arrays.
std::string text_array(const std::vector<std::string>& elements) {
    std::vector<const std::string*> ptrs;
    for (const auto& e : elements) ptrs.push_back(&e);
    return authsync::apply::binary_array(authsync::apply::ArrayType::Text, ptrs);
}

struct Pass {
    double wall = 0;
    double cpu = 0;
};

struct Bench {
    Conn& conn;
    int pid;
    std::size_t rows;
    std::size_t batch;
    std::vector<authsync::mapping::RowImage> images;
    authsync::mapping::MappingRule rule;
    PgTimestamp at = PgTimestamp::now();

    // Runs `one_batch(first, count)` over all rows, each batch in its own transaction.
    Pass run(const std::function<void(std::size_t, std::size_t)>& one_batch) {
        const double cpu0 = cpu_seconds(pid);
        const auto t0 = Clock::now();
        for (std::size_t first = 0; first < rows; first += batch) {
            conn.exec("BEGIN");
            one_batch(first, std::min(batch, rows - first));
            conn.exec("COMMIT");
        }
        Pass p;
        p.wall = std::chrono::duration<double>(Clock::now() - t0).count();
        p.cpu = cpu_seconds(pid) - cpu0;
        return p;
    }

    void exec_params(const std::string& sql, const std::vector<std::string>& values,
                     const std::vector<int>& formats) {
        std::vector<const char*> v;
        std::vector<int> lengths;
        for (const auto& s : values) {
            v.push_back(s.data());
            lengths.push_back(static_cast<int>(s.size()));
        }
        PGresult* r = PQexecParams(conn.c, sql.c_str(), static_cast<int>(v.size()), nullptr,
                                   v.data(), lengths.data(), formats.data(), 0);
        conn.check(r);
        PQclear(r);
    }

    // authsync's statement (apply::Batch) with its arrays as text literals (before issue 15).
    void unnest_text(std::size_t first, std::size_t count) {
        authsync::apply::Batch b;
        for (std::size_t i = first; i < first + count; ++i) b.upsert(rule, images[i], at);
        auto statements = b.statements();  // for the SQL text only
        std::vector<std::string> json, times;
        for (std::size_t i = first; i < first + count; ++i) {
            json.push_back(images[i].to_json());
            times.push_back(at.to_iso8601());
        }
        exec_params(
            statements.front().sql,
            {authsync::apply::text_array_literal(json), authsync::apply::text_array_literal(times)},
            {0, 0});
    }

    // authsync's statement as it goes now: apply::Batch's arrays in binary.
    void unnest_binary(std::size_t first, std::size_t count) {
        authsync::apply::Batch b;
        for (std::size_t i = first; i < first + count; ++i) b.upsert(rule, images[i], at);
        for (const auto& st : b.statements()) {
            std::vector<std::string> values;
            for (const auto& p : st.params) values.push_back(p.value_or(""));
            exec_params(st.sql, values, std::vector<int>(values.size(), st.arrays.empty() ? 0 : 1));
        }
    }

    // COPY into a temporary table (text format), then one INSERT ... SELECT ... ON CONFLICT.
    void copy_then_insert(std::size_t first, std::size_t count) {
        PGresult* r = PQexec(conn.c, "COPY pg_temp.stage (r, u) FROM STDIN");
        conn.check(r);
        PQclear(r);
        const std::string time = at.to_iso8601();
        std::string data;
        for (std::size_t i = first; i < first + count; ++i) {
            for (char c : images[i].to_json()) {  // COPY text format: escape \, tab, newline
                if (c == '\\')
                    data += "\\\\";
                else if (c == '\t')
                    data += "\\t";
                else if (c == '\n')
                    data += "\\n";
                else
                    data += c;
            }
            data += '\t';
            data += time;
            data += '\n';
        }
        if (PQputCopyData(conn.c, data.data(), static_cast<int>(data.size())) != 1 ||
            PQputCopyEnd(conn.c, nullptr) != 1) {
            throw std::runtime_error(PQerrorMessage(conn.c));
        }
        r = PQgetResult(conn.c);
        conn.check(r);
        PQclear(r);
        while ((r = PQgetResult(conn.c)) != nullptr) PQclear(r);
        conn.exec(authsync::apply::users_sync_upsert(
            "neon_auth.users_sync", "SELECT r::jsonb, u, NULL FROM pg_temp.stage"));
        conn.exec("TRUNCATE pg_temp.stage");
    }

    // The floor: the rows already in the target as jsonb, inserted server-side.
    void floor(std::size_t first, std::size_t count) {
        conn.exec(authsync::apply::users_sync_upsert(
            "neon_auth.users_sync",
            "SELECT raw_json, now(), NULL FROM floor_rows WHERE n >= " + std::to_string(first) +
                " AND n < " + std::to_string(first + count)));
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: bench_statements DSN [ROWS [BATCH [FORM...]]]\n";
        return 2;
    }
    try {
        Conn conn(argv[1]);
        const std::size_t rows = argc > 2 ? std::stoul(argv[2]) : 100000;
        const std::size_t batch = argc > 3 ? std::stoul(argv[3]) : 10000;
        std::vector<std::string> forms;
        for (int i = 4; i < argc; ++i) forms.emplace_back(argv[i]);
        if (forms.empty()) forms = {"unnest-text", "unnest-binary", "copy", "floor"};
        conn.exec("SET client_min_messages = warning");
        conn.exec("SET synchronous_commit = off");
        conn.exec("CREATE SCHEMA IF NOT EXISTS neon_auth");
        conn.exec(authsync::engine::users_sync_ddl("neon_auth", "users_sync"));
        conn.exec("CREATE TEMPORARY TABLE stage (r text, u timestamptz)");
        Bench b{conn, std::stoi(conn.exec("SELECT pg_backend_pid()")), rows, batch, {}, {}};
        b.rule.source_table = "users";
        b.rule.key_columns = {"id"};
        for (std::size_t i = 0; i < rows; ++i) b.images.push_back(user(i));
        // The floor's rows, made once (not timed): the same JSON as jsonb, numbered.
        conn.exec("CREATE TEMPORARY TABLE floor_rows (n bigint PRIMARY KEY, raw_json jsonb)");
        for (std::size_t first = 0; first < rows; first += 10000) {
            std::vector<std::string> json;
            for (std::size_t i = first; i < std::min(rows, first + 10000); ++i) {
                json.push_back(b.images[i].to_json());
            }
            b.exec_params(
                "INSERT INTO floor_rows SELECT $1::bigint + o - 1, r::jsonb FROM "
                "unnest($2::text[]) WITH ORDINALITY AS x(r, o)",
                {std::to_string(first), text_array(json)}, {0, 1});
        }
        std::printf("%-14s %8s %6s  %-7s %8s %8s %10s\n", "form", "rows", "batch", "pass", "wall s",
                    "cpu s", "rows/s");
        for (const auto& form : forms) {
            std::function<void(std::size_t, std::size_t)> f;
            if (form == "unnest-text")
                f = [&](auto a, auto n) { b.unnest_text(a, n); };
            else if (form == "unnest-binary")
                f = [&](auto a, auto n) { b.unnest_binary(a, n); };
            else if (form == "copy")
                f = [&](auto a, auto n) { b.copy_then_insert(a, n); };
            else if (form == "floor")
                f = [&](auto a, auto n) { b.floor(a, n); };
            else
                throw std::runtime_error("unknown form " + form);
            conn.exec("TRUNCATE neon_auth.users_sync");
            conn.exec("CHECKPOINT");
            for (const char* pass : {"insert", "update"}) {
                auto p = b.run(f);
                std::printf("%-14s %8zu %6zu  %-7s %8.3f %8.3f %10.0f\n", form.c_str(), rows, batch,
                            pass, p.wall, p.cpu, static_cast<double>(rows) / p.wall);
                std::fflush(stdout);
            }
            if (conn.exec("SELECT count(*) FROM neon_auth.users_sync") != std::to_string(rows)) {
                throw std::runtime_error(form + " left a different row count");
            }
        }
    } catch (const std::exception& e) {
        std::cerr << "bench_statements: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
