// NatsCluster: a real NATS JetStream cluster for a test: `nodes` nats-server processes (the
// Debian package's binary) on free loopback ports, routed to each other, each storing its
// streams in a temp dir of its own. Nodes can be killed and started again with their stores;
// everything is killed and removed in the destructor.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "process.hpp"

namespace authsync::test {

class NatsCluster {
public:
    explicit NatsCluster(int nodes = 3);
    ~NatsCluster();
    NatsCluster(const NatsCluster&) = delete;
    NatsCluster& operator=(const NatsCluster&) = delete;

    int size() const { return static_cast<int>(nodes_.size()); }
    // nats://127.0.0.1:port of every node.
    std::vector<std::string> urls() const;
    void kill(int node);  // SIGKILL
    void stop(int node);  // SIGTERM, and waits for the exit
    void start(int node);
    bool running(int node);
    // Whether the node answers /healthz with JetStream ready.
    bool healthy(int node) const;
    // Waits until every node that should be up (started and not since killed or stopped) is
    // running, answers /healthz, and is a current member of the JetStream meta group as its
    // leader sees it: only then can a stream with a replica on each of them be placed. Throws
    // with the nodes' logs when a node has exited or after 60 s.
    void wait_healthy();
    std::string log(int node) const;
    // The body of GET `path` (e.g. "/jsz?consumers=true") on the node's monitoring port; empty
    // when it does not answer.
    std::string monitor(int node, const std::string& path) const;

private:
    struct Node {
        int client_port = 0;
        int cluster_port = 0;
        int monitor_port = 0;
        std::string config;
        std::unique_ptr<Process> process;
        bool up = false;  // started, and not since killed or stopped
    };
    void choose_ports();
    void write_configs();
    void start_all();
    // Whether the meta group's leader lists every other node that should be up as current.
    bool meta_group_whole() const;
    std::string logs() const;

    std::string base_dir_;
    std::vector<Node> nodes_;
};

// The nats-server binary (the Debian package puts it in /usr/sbin); throws when missing.
std::string nats_server_binary();

}  // namespace authsync::test
