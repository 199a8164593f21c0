// JetStream: authsync's use of a NATS JetStream cluster (cnats, libnats-dev), the durable log
// between the source role, which publishes each target's frames (frame.hpp), and the sinks.
//
// Calls block the calling thread (cnats does its network I/O on threads of its own, and
// reconnects by itself, to any of `servers`, without limit); the engine runs them off its io
// thread. Every failure is a TransportError, transient when trying again may help (a server or
// a stream leader away, a timeout), so that the session retries as it does for a database that
// is down. Messages are never logged: they hold row values.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "authsync/core/error.hpp"

struct __natsConnection;
struct __natsSubscription;
struct __natsMsg;
struct __jsCtx;
struct jsPubAckErr;

namespace authsync::transport {

class TransportError : public ServiceError {
public:
    using ServiceError::ServiceError;
};

struct NatsConfig {
    std::vector<std::string> servers;         // nats://host:port
    std::string name = "authsync";            // the connection's name, as the server lists it
    std::chrono::milliseconds timeout{5000};  // each request (an API call, a publish's ack)
};

struct StreamSpec {
    std::string name;
    std::vector<std::string> subjects;
    int replicas = 1;
    std::optional<std::int64_t> max_bytes;
    std::optional<std::chrono::seconds> max_age;
    std::chrono::seconds duplicate_window{120};
};

struct StreamState {
    std::uint64_t messages = 0;
    std::uint64_t bytes = 0;
    std::uint64_t first_sequence = 0;
    std::uint64_t last_sequence = 0;
};

// One message of a publish_all().
struct Outgoing {
    std::string subject;
    std::string data;
    std::string message_id;
};

struct PublishAck {
    std::uint64_t sequence = 0;
    bool duplicate = false;  // its message id was stored already (within the window)
};

// A message fetched from a consumer, to acknowledge once what it carries is durable.
class Delivered {
public:
    explicit Delivered(__natsMsg* msg);
    ~Delivered();
    Delivered(Delivered&& other) noexcept;
    Delivered& operator=(Delivered&& other) noexcept;
    Delivered(const Delivered&) = delete;
    Delivered& operator=(const Delivered&) = delete;

    std::string_view data() const;
    std::uint64_t stream_sequence() const { return stream_sequence_; }
    // The consumer's count of its deliveries, this one included (a redelivery counts anew):
    // 1 is its first, the oldest frame the stream keeps for the consumer's subject.
    std::uint64_t consumer_sequence() const { return consumer_sequence_; }
    std::uint64_t deliveries() const { return deliveries_; }  // 1 the first time
    std::uint64_t pending() const { return pending_; }        // after this one, for its consumer
    // Acknowledged, and the server confirmed it (or TransportError).
    void ack(std::chrono::milliseconds timeout);
    // Delivered again, after `delay`.
    void nak(std::chrono::milliseconds delay);

private:
    __natsMsg* msg_ = nullptr;
    std::uint64_t stream_sequence_ = 0;
    std::uint64_t consumer_sequence_ = 0;
    std::uint64_t deliveries_ = 0;
    std::uint64_t pending_ = 0;
};

class JetStream;

// A durable pull consumer, bound (created beforehand by JetStream::consumer, so that closing
// the subscription never deletes it). One fetcher at a time.
class Consumer {
public:
    Consumer(Consumer&& other) noexcept;
    ~Consumer();
    // Up to `batch` messages in stream order, waiting at most `timeout` for the first; none
    // when nothing came.
    std::vector<Delivered> fetch(int batch, std::chrono::milliseconds timeout);
    // How many of the stream's messages for its subject it has not been delivered yet. Throws
    // TransportError when the consumer is gone or has no leader (a fetch only times out then).
    std::uint64_t pending();

private:
    friend class JetStream;
    Consumer(JetStream& js, std::string stream, std::string durable, __natsSubscription* sub);
    JetStream* js_;
    std::string stream_;
    std::string durable_;
    __natsSubscription* sub_ = nullptr;
};

class JetStream {
public:
    // Connects (retrying as the servers come up, within config.timeout for the first answer).
    explicit JetStream(NatsConfig config);
    ~JetStream();
    JetStream(const JetStream&) = delete;
    JetStream& operator=(const JetStream&) = delete;

    // Creates the stream, or updates it to `spec` (its limits); the same for what exists.
    // Tries again while the cluster cannot answer (no meta leader yet, a request lost in an
    // election, no peers yet for the replicas) until `deadline` has passed.
    void ensure_stream(const StreamSpec& spec, std::chrono::milliseconds deadline);
    StreamState stream_state(const std::string& stream);
    // Publishes and waits for the stream's acknowledgement (stored on its replicas), trying
    // again with the same message id while the stream has no leader (an election after a node
    // was lost) until `deadline` has passed.
    PublishAck publish(const std::string& subject, std::string_view data,
                       const std::string& message_id, std::chrono::milliseconds deadline);
    // Publishes every message without waiting between them, then waits until the stream has
    // acknowledged each (at most `deadline`). Throws TransportError, transient, naming the first
    // that failed: the caller starts over from what the stream holds (none is retried here, so
    // that a subject's messages are never stored out of order). Give one message per subject.
    void publish_all(const std::vector<Outgoing>& messages, std::chrono::milliseconds deadline);
    // The most bytes one message may carry (the servers' max_payload).
    std::size_t max_payload() const;
    // The last message stored on `subject`, if any.
    std::optional<std::string> last_message(const std::string& stream, const std::string& subject);
    // The durable consumer `durable` of `stream`, filtered to `subject` (created if missing):
    // explicit acks, redelivered after `ack_wait` unacknowledged. Tries again while the cluster
    // cannot answer until `deadline` has passed.
    Consumer consumer(const std::string& stream, const std::string& durable,
                      const std::string& subject, std::chrono::seconds ack_wait,
                      std::chrono::milliseconds deadline);
    // A consumer of `subject` for one reader's session: it delivers the subject from its first
    // stored message in stream order (nothing an earlier reader left unacknowledged comes back
    // after later messages), an ack covers the messages before it, and the server removes it
    // once unused for `idle` (a reader that died). One replica, in memory: it holds only one
    // session's progress (the reader's own checkpoint is the truth), so a consumer lost with
    // its node costs a new session, not a Raft group per subject on every node.
    Consumer session_consumer(const std::string& stream, const std::string& subject,
                              std::chrono::seconds ack_wait, std::chrono::seconds idle);

private:
    friend class Consumer;
    static void on_publish_error(__jsCtx* js, jsPubAckErr* pae, void* closure);
    NatsConfig config_;
    std::mutex errors_mutex_;
    std::string publish_error_;  // the first publish_all() failure reported, if any
    __natsConnection* nc_ = nullptr;
    __jsCtx* js_ = nullptr;
};

}  // namespace authsync::transport
