#include "nats_cluster.hpp"

#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "pg_cluster.hpp"  // free_port, run_shell

namespace authsync::test {

std::string nats_server_binary() {
    for (const char* path : {"/usr/sbin/nats-server", "/usr/bin/nats-server"}) {
        if (::access(path, X_OK) == 0) return path;
    }
    throw std::runtime_error("nats-server is not installed (scripts/setup-deps installs it)");
}

NatsCluster::NatsCluster(int nodes) {
    char tmpl[] = "/tmp/authsync-nats-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    base_dir_ = tmpl;
    nodes_.resize(static_cast<std::size_t>(nodes));
    // A port that free_port() found free can be taken by another socket before the node binds
    // it; the node then exits at once and the cluster is short of a member. Such a start is
    // tried again on other ports.
    constexpr int kAttempts = 3;
    for (int attempt = 1;; ++attempt) {
        choose_ports();
        write_configs();
        start_all();
        try {
            wait_healthy();
            return;
        } catch (const std::runtime_error&) {
            for (auto& n : nodes_) n.process->kill9();
            if (attempt == kAttempts) throw;
        }
    }
}

void NatsCluster::choose_ports() {
    std::set<int> taken;
    auto distinct = [&] {
        for (;;) {
            const int port = free_port();
            if (taken.insert(port).second) return port;
        }
    };
    for (auto& n : nodes_) {
        n.client_port = distinct();
        n.cluster_port = distinct();
        n.monitor_port = distinct();
    }
}

void NatsCluster::write_configs() {
    std::string routes;
    for (const auto& n : nodes_) {
        if (!routes.empty()) routes += ", ";
        routes += "nats-route://127.0.0.1:" + std::to_string(n.cluster_port);
    }
    const auto binary = nats_server_binary();
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        auto& n = nodes_[i];
        const auto name = "n" + std::to_string(i + 1);
        const auto dir = base_dir_ + "/" + name;
        std::filesystem::remove_all(dir);  // a failed attempt's store
        std::filesystem::create_directories(dir);
        n.config = dir + "/nats.conf";
        std::ofstream conf(n.config);
        conf << "server_name: " << name << "\n"
             << "listen: 127.0.0.1:" << n.client_port << "\n"
             << "http: 127.0.0.1:" << n.monitor_port << "\n"
             << "jetstream {\n  store_dir: \"" << dir << "/store\"\n"
             << "  max_memory_store: 64MB\n  max_file_store: 1GB\n}\n";
        if (nodes_.size() > 1) {
            conf << "cluster {\n  name: authsync-test\n  listen: 127.0.0.1:" << n.cluster_port
                 << "\n  routes: [" << routes << "]\n}\n";
        }
        conf.close();
        n.process = std::make_unique<Process>(std::vector<std::string>{binary, "-c", n.config},
                                              dir + "/server.log");
    }
}

void NatsCluster::start_all() {
    for (std::size_t i = 0; i < nodes_.size(); ++i) start(static_cast<int>(i));
}

NatsCluster::~NatsCluster() {
    for (auto& n : nodes_) n.process.reset();  // SIGKILL
    std::error_code ec;
    std::filesystem::remove_all(base_dir_, ec);
}

std::vector<std::string> NatsCluster::urls() const {
    std::vector<std::string> out;
    for (const auto& n : nodes_) out.push_back("nats://127.0.0.1:" + std::to_string(n.client_port));
    return out;
}

void NatsCluster::kill(int node) {
    auto& n = nodes_.at(static_cast<std::size_t>(node));
    n.up = false;
    n.process->kill9();
}

void NatsCluster::stop(int node) {
    nodes_.at(static_cast<std::size_t>(node)).up = false;
    auto& p = *nodes_.at(static_cast<std::size_t>(node)).process;
    p.signal(SIGTERM);
    if (p.wait(std::chrono::seconds(30)) < 0) p.kill9();
}

void NatsCluster::start(int node) {
    auto& n = nodes_.at(static_cast<std::size_t>(node));
    n.process->start();
    n.up = true;
}

bool NatsCluster::running(int node) {
    return nodes_.at(static_cast<std::size_t>(node)).process->running();
}

bool NatsCluster::healthy(int node) const {
    const auto& n = nodes_.at(static_cast<std::size_t>(node));
    return run_shell("curl -sf -m 2 -o /dev/null http://127.0.0.1:" +
                     std::to_string(n.monitor_port) + "/healthz") == 0;
}

void NatsCluster::wait_healthy() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    auto remaining = [&] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
    };
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (!nodes_[i].up) continue;
        const auto name = "n" + std::to_string(i + 1);
        const bool ready = wait_until(
            [&] { return !nodes_[i].process->running() || healthy(static_cast<int>(i)); },
            remaining());
        if (!nodes_[i].process->running()) {
            throw std::runtime_error("nats-server " + name + " exited:\n" + logs());
        }
        if (!ready) {
            throw std::runtime_error("nats-server " + name + " did not become healthy:\n" + logs());
        }
    }
    if (!wait_until([&] { return meta_group_whole(); }, remaining())) {
        throw std::runtime_error("the NATS nodes did not form a whole JetStream meta group:\n" +
                                 logs());
    }
}

bool NatsCluster::meta_group_whole() const {
    if (nodes_.size() < 2) return true;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (!nodes_[i].up) continue;
        const auto body = monitor(static_cast<int>(i), "/jsz");
        const auto jsz = nlohmann::json::parse(body, nullptr, false);
        if (jsz.is_discarded() || !jsz.contains("meta_cluster")) continue;
        const auto& meta = jsz["meta_cluster"];
        if (meta.value("leader", "") != "n" + std::to_string(i + 1)) continue;
        // The leader: every other node that should be up is a current replica.
        for (std::size_t j = 0; j < nodes_.size(); ++j) {
            if (j == i || !nodes_[j].up) continue;
            const auto name = "n" + std::to_string(j + 1);
            bool current = false;
            for (const auto& r : meta.value("replicas", nlohmann::json::array())) {
                if (r.value("name", "") == name) {
                    current = r.value("current", false) && !r.value("offline", false);
                }
            }
            if (!current) return false;
        }
        return true;
    }
    return false;  // no node that should be up is the leader yet
}

std::string NatsCluster::logs() const {
    std::string out;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        out += "--- n" + std::to_string(i + 1) + (nodes_[i].up ? "" : " (down)") + ":\n" +
               log(static_cast<int>(i));
    }
    return out;
}

std::string NatsCluster::monitor(int node, const std::string& path) const {
    const auto& n = nodes_.at(static_cast<std::size_t>(node));
    try {
        return run_shell_output(
            "curl -sf -m 5 'http://127.0.0.1:" + std::to_string(n.monitor_port) + path + "'");
    } catch (const std::runtime_error&) {
        return {};  // not running, or not answering
    }
}

std::string NatsCluster::log(int node) const {
    return nodes_.at(static_cast<std::size_t>(node)).process->log();
}

}  // namespace authsync::test
