#include "authsync/transport/jetstream.hpp"

#include <nats/nats.h>

#include <algorithm>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "authsync/transport/jetstream_errors.hpp"

namespace authsync::transport {

namespace {

using Clock = std::chrono::steady_clock;

// Worth trying again: a server, a leader or an answer away, or the connection in trouble
// (a node shutting down, an election). What the JetStream API refused with an error code of
// its own (a stream config the servers cannot take) and misuse stay refused.
bool transient_status(natsStatus s, jsErrCode code) {
    switch (s) {
        case NATS_TIMEOUT:
        case NATS_NO_RESPONDERS:
        case NATS_NO_SERVER:
        case NATS_CONNECTION_CLOSED:
        case NATS_CONNECTION_DISCONNECTED:
        case NATS_NOT_YET_CONNECTED:
        case NATS_IO_ERROR:
        case NATS_STALE_CONNECTION:
        case NATS_SLOW_CONSUMER: return true;
        case NATS_INVALID_ARG:
        case NATS_INVALID_SUBJECT:
        case NATS_NOT_PERMITTED:
        case NATS_MAX_PAYLOAD: return false;
        // NATS_ERR and the like: the server's error code says (no code: a client-side
        // failure of a request, e.g. after a whole cluster's restart). A replica count the
        // servers can never hold is refused by the config and, with another code, by them.
        default: return code == 0 || transient_jetstream_error(static_cast<int>(code));
    }
}

// What went wrong, with the server's description where it gave one (never a payload).
[[noreturn]] void fail(const std::string& doing, natsStatus s,
                       jsErrCode code = static_cast<jsErrCode>(0)) {
    natsStatus last = NATS_OK;
    const char* detail = nats_GetLastError(&last);
    std::string text = fmt::format("NATS: {}: {}", doing, natsStatus_GetText(s));
    if (detail != nullptr && *detail != '\0' && last == s) text += fmt::format(" ({})", detail);
    if (code != 0) text += fmt::format(" [JetStream error {}]", static_cast<int>(code));
    throw TransportError(text, transient_status(s, code));
}

// After a failed request that is safe to send again: pauses before the next try when the
// failure is worth retrying and `until` has not passed; otherwise throws.
void pause_or_fail(Clock::time_point until, const std::string& doing, natsStatus s,
                   jsErrCode code) {
    if (!transient_status(s, code) || Clock::now() >= until) fail(doing, s, code);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
}

std::int64_t nanoseconds(std::chrono::nanoseconds d) {
    return d.count();
}

}  // namespace

// Delivered

Delivered::Delivered(natsMsg* msg) : msg_(msg) {
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg_) == NATS_OK) {
        stream_sequence_ = meta->Sequence.Stream;
        consumer_sequence_ = meta->Sequence.Consumer;
        deliveries_ = meta->NumDelivered;
        pending_ = meta->NumPending;
        jsMsgMetaData_Destroy(meta);
    }
}

Delivered::~Delivered() {
    natsMsg_Destroy(msg_);
}

Delivered::Delivered(Delivered&& other) noexcept
    : msg_(std::exchange(other.msg_, nullptr)),
      stream_sequence_(other.stream_sequence_),
      consumer_sequence_(other.consumer_sequence_),
      deliveries_(other.deliveries_),
      pending_(other.pending_) {}

Delivered& Delivered::operator=(Delivered&& other) noexcept {
    if (this != &other) {
        natsMsg_Destroy(msg_);
        msg_ = std::exchange(other.msg_, nullptr);
        stream_sequence_ = other.stream_sequence_;
        consumer_sequence_ = other.consumer_sequence_;
        deliveries_ = other.deliveries_;
        pending_ = other.pending_;
    }
    return *this;
}

std::string_view Delivered::data() const {
    const int n = natsMsg_GetDataLength(msg_);
    return n > 0 ? std::string_view(natsMsg_GetData(msg_), static_cast<std::size_t>(n))
                 : std::string_view();
}

void Delivered::ack(std::chrono::milliseconds timeout) {
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = timeout.count();
    jsErrCode code = static_cast<jsErrCode>(0);
    if (const auto s = natsMsg_AckSync(msg_, &o, &code); s != NATS_OK) {
        fail(fmt::format("acknowledging message {}", stream_sequence_), s, code);
    }
}

void Delivered::nak(std::chrono::milliseconds delay) {
    if (const auto s = natsMsg_NakWithDelay(msg_, delay.count(), nullptr); s != NATS_OK) {
        fail(fmt::format("returning message {}", stream_sequence_), s);
    }
}

// Consumer

Consumer::Consumer(JetStream& js, std::string stream, std::string durable, natsSubscription* sub)
    : js_(&js), stream_(std::move(stream)), durable_(std::move(durable)), sub_(sub) {}

Consumer::Consumer(Consumer&& other) noexcept
    : js_(other.js_),
      stream_(std::move(other.stream_)),
      durable_(std::move(other.durable_)),
      sub_(std::exchange(other.sub_, nullptr)) {}

Consumer::~Consumer() {
    // Destroyed, not unsubscribed: the durable consumer stays on the server with its position.
    natsSubscription_Destroy(sub_);
}

std::vector<Delivered> Consumer::fetch(int batch, std::chrono::milliseconds timeout) {
    natsMsgList list{};
    jsErrCode code = static_cast<jsErrCode>(0);
    const auto s = natsSubscription_Fetch(&list, sub_, batch, timeout.count(), &code);
    std::vector<Delivered> out;
    if (s == NATS_TIMEOUT) return out;  // nothing came (or a stale status ended it early)
    if (s != NATS_OK) fail(fmt::format("fetching from consumer {}", durable_), s, code);
    out.reserve(static_cast<std::size_t>(list.Count));
    for (int i = 0; i < list.Count; ++i) out.emplace_back(std::exchange(list.Msgs[i], nullptr));
    natsMsgList_Destroy(&list);
    return out;
}

std::uint64_t Consumer::pending() {
    jsConsumerInfo* ci = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const auto s =
        js_GetConsumerInfo(&ci, js_->js_, stream_.c_str(), durable_.c_str(), nullptr, &code);
    if (s != NATS_OK) fail(fmt::format("reading consumer {}", durable_), s, code);
    const auto n = ci->NumPending;
    jsConsumerInfo_Destroy(ci);
    return n;
}

// JetStream

JetStream::JetStream(NatsConfig config) : config_(std::move(config)) {
    if (config_.servers.empty()) throw TransportError("NATS: no servers configured", false);
    natsOptions* opts = nullptr;
    if (const auto s = natsOptions_Create(&opts); s != NATS_OK) fail("options", s);
    std::vector<const char*> urls;
    for (const auto& u : config_.servers) urls.push_back(u.c_str());
    natsOptions_SetServers(opts, urls.data(), static_cast<int>(urls.size()));
    natsOptions_SetName(opts, config_.name.c_str());
    natsOptions_SetMaxReconnect(opts, -1);  // any of the servers, for as long as it takes
    natsOptions_SetReconnectWait(opts, 250);
    natsOptions_SetTimeout(opts, 2000);
    const auto until = Clock::now() + config_.timeout;
    natsStatus s = NATS_OK;
    while ((s = natsConnection_Connect(&nc_, opts)) != NATS_OK && Clock::now() < until &&
           transient_status(s, static_cast<jsErrCode>(0))) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    natsOptions_Destroy(opts);
    if (s != NATS_OK) fail(fmt::format("connecting to {}", fmt::join(config_.servers, ", ")), s);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = config_.timeout.count();
    jo.PublishAsync.ErrHandler = &JetStream::on_publish_error;
    jo.PublishAsync.ErrHandlerClosure = this;
    if (const auto js = natsConnection_JetStream(&js_, nc_, &jo); js != NATS_OK) {
        natsConnection_Destroy(nc_);
        fail("JetStream context", js);
    }
}

JetStream::~JetStream() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
}

void JetStream::ensure_stream(const StreamSpec& spec, std::chrono::milliseconds deadline) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    std::vector<const char*> subjects;
    for (const auto& subject : spec.subjects) subjects.push_back(subject.c_str());
    cfg.Name = spec.name.c_str();
    cfg.Subjects = subjects.data();
    cfg.SubjectsLen = static_cast<int>(subjects.size());
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;  // the tail and the dedup state outlive consumption
    cfg.Replicas = spec.replicas;
    if (spec.max_bytes) cfg.MaxBytes = *spec.max_bytes;
    if (spec.max_age) cfg.MaxAge = nanoseconds(*spec.max_age);
    cfg.Duplicates = nanoseconds(spec.duplicate_window);
    const auto until = Clock::now() + deadline;
    for (;;) {
        // Safe to send again: a create whose answer was lost finds the stream, and updates it
        // to the same spec.
        jsErrCode code = static_cast<jsErrCode>(0);
        auto s = js_AddStream(nullptr, js_, &cfg, nullptr, &code);
        if (s != NATS_OK && code == JSStreamNameExistErr) {
            code = static_cast<jsErrCode>(0);
            s = js_UpdateStream(nullptr, js_, &cfg, nullptr, &code);
        }
        if (s == NATS_OK) return;
        if (code == JSStreamSubjectOverlapErr) {
            throw TransportError(
                fmt::format("NATS: creating stream {}: another stream of these servers takes "
                            "subjects {}: give each stream a subject_prefix of its own",
                            spec.name, fmt::join(spec.subjects, ", ")),
                false);
        }
        // No peers for the placement (10005) passes while a cluster forms, and never when it
        // has fewer JetStream servers than the replicas asked for: the message says how many.
        pause_or_fail(until,
                      code == JSClusterNoPeersErr
                          ? fmt::format("creating stream {} with {} replicas (transport.replicas; "
                                        "the cluster needs that many JetStream servers)",
                                        spec.name, spec.replicas)
                          : fmt::format("creating stream {}", spec.name),
                      s, code);
    }
}

StreamState JetStream::stream_state(const std::string& stream) {
    jsStreamInfo* si = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const auto s = js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &code);
    if (s != NATS_OK) fail(fmt::format("reading stream {}", stream), s, code);
    StreamState state{si->State.Msgs, si->State.Bytes, si->State.FirstSeq, si->State.LastSeq};
    jsStreamInfo_Destroy(si);
    return state;
}

PublishAck JetStream::publish(const std::string& subject, std::string_view data,
                              const std::string& message_id, std::chrono::milliseconds deadline) {
    const auto until = Clock::now() + deadline;
    for (;;) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = message_id.c_str();
        po.MaxWait = config_.timeout.count();
        jsPubAck* ack = nullptr;
        jsErrCode code = static_cast<jsErrCode>(0);
        const auto s = js_Publish(&ack, js_, subject.c_str(), data.data(),
                                  static_cast<int>(data.size()), &po, &code);
        if (s == NATS_OK) {
            PublishAck out{ack->Sequence, ack->Duplicate};
            jsPubAck_Destroy(ack);
            return out;
        }
        // No leader yet (an election), or no answer: the same id again, stored once.
        pause_or_fail(until, fmt::format("publishing to {}", subject), s, code);
    }
}

void JetStream::on_publish_error(jsCtx*, jsPubAckErr* pae, void* closure) {
    auto* self = static_cast<JetStream*>(closure);
    const char* subject = pae->Msg != nullptr ? natsMsg_GetSubject(pae->Msg) : "?";
    // The server's text names the failure (never the payload).
    auto text = fmt::format("NATS: publishing to {}: {}", subject != nullptr ? subject : "?",
                            natsStatus_GetText(pae->Err));
    if (pae->ErrText != nullptr && *pae->ErrText != '\0')
        text += fmt::format(" ({})", pae->ErrText);
    if (pae->ErrCode != 0)
        text += fmt::format(" [JetStream error {}]", static_cast<int>(pae->ErrCode));
    std::lock_guard lock(self->errors_mutex_);
    if (self->publish_error_.empty()) self->publish_error_ = std::move(text);
}

void JetStream::publish_all(const std::vector<Outgoing>& messages,
                            std::chrono::milliseconds deadline) {
    {
        std::lock_guard lock(errors_mutex_);
        publish_error_.clear();
    }
    for (const auto& m : messages) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = m.message_id.c_str();
        const auto s = js_PublishAsync(js_, m.subject.c_str(), m.data.data(),
                                       static_cast<int>(m.data.size()), &po);
        if (s != NATS_OK) fail(fmt::format("publishing to {}", m.subject), s);
    }
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = deadline.count();
    const auto s = js_PublishAsyncComplete(js_, &wait);
    std::string error;
    {
        std::lock_guard lock(errors_mutex_);
        error = std::exchange(publish_error_, {});
    }
    if (!error.empty()) throw TransportError(error, true);
    if (s != NATS_OK) fail(fmt::format("waiting for {} acknowledgements", messages.size()), s);
}

std::size_t JetStream::max_payload() const {
    return static_cast<std::size_t>(std::max<int64_t>(natsConnection_GetMaxPayload(nc_), 0));
}

std::optional<std::string> JetStream::last_message(const std::string& stream,
                                                   const std::string& subject) {
    natsMsg* msg = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const auto s = js_GetLastMsg(&msg, js_, stream.c_str(), subject.c_str(), nullptr, &code);
    // Only the stream's own answer says the subject holds nothing: a NOT_FOUND of another
    // kind (the stream not known to a node yet, during an election) is worth asking again.
    if (code == JSNoMessageFoundErr) return std::nullopt;
    if (s == NATS_NOT_FOUND && code == 0) {
        throw TransportError(fmt::format("NATS: reading the last message of {}: not found, "
                                         "without the stream's word that it holds none",
                                         subject),
                             true);
    }
    if (s != NATS_OK) fail(fmt::format("reading the last message of {}", subject), s, code);
    const int n = natsMsg_GetDataLength(msg);
    std::string out(natsMsg_GetData(msg), static_cast<std::size_t>(std::max(n, 0)));
    natsMsg_Destroy(msg);
    return out;
}

Consumer JetStream::consumer(const std::string& stream, const std::string& durable,
                             const std::string& subject, std::chrono::seconds ack_wait,
                             std::chrono::milliseconds deadline) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = nanoseconds(ack_wait);
    cc.FilterSubject = subject.c_str();
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Consumer = durable.c_str();
    const auto until = Clock::now() + deadline;
    for (;;) {
        // Created first, then bound: a subscription that created its consumer would delete it
        // when it is closed. Both are safe to send again (the durable is found the second time).
        jsErrCode code = static_cast<jsErrCode>(0);
        auto s = js_AddConsumer(nullptr, js_, stream.c_str(), &cc, nullptr, &code);
        if (s != NATS_OK && code != JSConsumerNameExistErr) {
            pause_or_fail(until, fmt::format("creating consumer {}", durable), s, code);
            continue;
        }
        natsSubscription* sub = nullptr;
        code = static_cast<jsErrCode>(0);
        s = js_PullSubscribe(&sub, js_, subject.c_str(), durable.c_str(), nullptr, &so, &code);
        if (s == NATS_OK) return Consumer(*this, stream, durable, sub);
        pause_or_fail(until, fmt::format("binding consumer {}", durable), s, code);
    }
}

Consumer JetStream::session_consumer(const std::string& stream, const std::string& subject,
                                     std::chrono::seconds ack_wait, std::chrono::seconds idle) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.AckPolicy = js_AckAll;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = nanoseconds(ack_wait);
    cc.FilterSubject = subject.c_str();
    cc.InactiveThreshold = nanoseconds(idle);
    cc.Replicas = 1;
    cc.MemoryStorage = true;
    jsConsumerInfo* ci = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    auto s = js_AddConsumer(&ci, js_, stream.c_str(), &cc, nullptr, &code);
    if (s != NATS_OK) fail(fmt::format("creating a consumer of {}", subject), s, code);
    const std::string name = ci->Name;
    jsConsumerInfo_Destroy(ci);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Consumer = name.c_str();
    so.Config.MemoryStorage = true;  // binding checks the consumer's config against this
    natsSubscription* sub = nullptr;
    code = static_cast<jsErrCode>(0);
    s = js_PullSubscribe(&sub, js_, subject.c_str(), name.c_str(), nullptr, &so, &code);
    if (s != NATS_OK) fail(fmt::format("binding consumer {}", name), s, code);
    return Consumer(*this, stream, name, sub);
}

}  // namespace authsync::transport
