#include "nats_cluster.hpp"

#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <stdexcept>

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
    const auto binary = nats_server_binary();
    nodes_.resize(static_cast<std::size_t>(nodes));
    for (auto& n : nodes_) {
        n.client_port = free_port();
        n.cluster_port = free_port();
        n.monitor_port = free_port();
    }
    std::string routes;
    for (const auto& n : nodes_) {
        if (!routes.empty()) routes += ", ";
        routes += "nats-route://127.0.0.1:" + std::to_string(n.cluster_port);
    }
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        auto& n = nodes_[i];
        const auto name = "n" + std::to_string(i + 1);
        const auto dir = base_dir_ + "/" + name;
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
        n.process->start();
    }
    wait_healthy();
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
    nodes_.at(static_cast<std::size_t>(node)).process->kill9();
}

void NatsCluster::stop(int node) {
    auto& p = *nodes_.at(static_cast<std::size_t>(node)).process;
    p.signal(SIGTERM);
    if (p.wait(std::chrono::seconds(30)) < 0) p.kill9();
}

void NatsCluster::start(int node) {
    nodes_.at(static_cast<std::size_t>(node)).process->start();
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
    for (int i = 0; i < size(); ++i) {
        if (!running(i)) continue;
        if (!wait_until([&] { return healthy(i); }, std::chrono::seconds(60))) {
            throw std::runtime_error("nats-server n" + std::to_string(i + 1) +
                                     " did not become healthy:\n" + log(i));
        }
    }
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
