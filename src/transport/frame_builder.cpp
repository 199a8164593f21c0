#include "authsync/transport/frame_builder.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "authsync/core/error.hpp"

namespace authsync::transport {

namespace {

// A frame's encoded header, and each message's length prefix (frame.hpp's layout).
constexpr std::size_t kHeaderBytes = 4 + 8 + 8 + 4 + 4 + 8 + 4;
constexpr std::size_t kPerMessage = 4;

}  // namespace

FrameBuilder::FrameBuilder(std::size_t targets, std::size_t max_frame_bytes, std::uint64_t epoch)
    : targets_(targets), max_frame_bytes_(max_frame_bytes), epoch_(epoch) {}

void FrameBuilder::start_target(std::size_t t, Lsn chain, Lsn published) {
    auto& target = targets_.at(t);
    target.chain = chain;
    target.published = published;
}

void FrameBuilder::resume_target(std::size_t t, const Frame& last) {
    if (last.messages.empty()) {
        start_target(t, last.prev_end_lsn, last.end_lsn);
        return;
    }
    const Lsn holds = last.part + 1 == last.parts ? last.end_lsn : last.prev_end_lsn;
    start_target(t, holds, holds);
}

std::optional<Frame> FrameBuilder::mark(std::size_t t, Lsn covered) const {
    const auto& target = targets_.at(t);
    if (!target.chain.is_valid() || covered <= target.chain || !target.batch.empty() ||
        !target.txn.empty()) {
        return std::nullopt;
    }
    Frame f;
    f.end_lsn = covered;
    f.prev_end_lsn = target.chain;
    f.epoch = epoch_;
    return f;
}

void FrameBuilder::relation(std::uint32_t relation_id, std::string_view bytes,
                            std::vector<std::uint32_t> column_types) {
    relations_[relation_id] = Relation{std::string(bytes), std::move(column_types)};
    // A change after a re-sent Relation carries it again: the sink's cache replaces its own.
    for (auto& t : targets_) t.txn_relations.erase(relation_id);
}

void FrameBuilder::type(std::uint32_t type_id, std::string_view bytes) {
    types_[type_id] = std::string(bytes);
}

void FrameBuilder::begin(std::string_view bytes) {
    begin_ = std::string(bytes);
    for (auto& t : targets_) {
        t.txn.clear();
        t.txn_relations.clear();
    }
}

void FrameBuilder::change(std::size_t t, const std::vector<std::uint32_t>& relations,
                          std::string_view bytes) {
    auto& target = targets_.at(t);
    if (target.txn.empty()) target.txn.push_back(begin_);
    for (const auto id : relations) {
        if (target.txn_relations.count(id)) continue;
        const auto rel = relations_.find(id);
        if (rel == relations_.end()) {
            throw ProtocolError(
                fmt::format("a change of relation {} before its Relation message", id));
        }
        for (const auto type_id : rel->second.column_types) {
            if (auto type = types_.find(type_id); type != types_.end()) {
                target.txn.push_back(type->second);
            }
        }
        target.txn.push_back(rel->second.bytes);
        target.txn_relations.insert(id);
    }
    target.txn.emplace_back(bytes);
}

void FrameBuilder::commit(std::string_view bytes, Lsn end_lsn) {
    for (auto& t : targets_) {
        if (t.txn.empty()) continue;
        if (end_lsn <= t.published) {
            t.txn.clear();  // on the subject already
            continue;
        }
        t.txn.emplace_back(bytes);
        for (auto& m : t.txn) {
            t.batch_bytes += m.size() + kPerMessage;
            t.batch.push_back(std::move(m));
        }
        t.txn.clear();
        t.batch_end = end_lsn;
    }
    pending_end_ = end_lsn;
    ++pending_txns_;
}

std::size_t FrameBuilder::largest_batch_bytes() const {
    std::size_t most = 0;
    for (const auto& t : targets_) most = std::max(most, t.batch_bytes);
    return most;
}

std::vector<std::pair<std::size_t, std::vector<Frame>>> FrameBuilder::take() {
    std::vector<std::pair<std::size_t, std::vector<Frame>>> out;
    for (std::size_t i = 0; i < targets_.size(); ++i) {
        auto& t = targets_[i];
        if (t.batch.empty()) continue;
        std::vector<Frame> parts;
        std::size_t size = 0;
        for (auto& m : t.batch) {
            if (kHeaderBytes + kPerMessage + m.size() > max_frame_bytes_) {
                throw Error(fmt::format(
                    "a pgoutput message of {} bytes does not fit in a frame of at most {} "
                    "bytes (the NATS servers' max_payload): raise max_payload",
                    m.size(), max_frame_bytes_));
            }
            if (parts.empty() || size + kPerMessage + m.size() > max_frame_bytes_) {
                parts.emplace_back();
                size = kHeaderBytes;
            }
            size += kPerMessage + m.size();
            parts.back().messages.push_back(std::move(m));
        }
        for (std::size_t p = 0; p < parts.size(); ++p) {
            parts[p].end_lsn = t.batch_end;
            parts[p].prev_end_lsn = t.chain;
            parts[p].part = static_cast<std::uint32_t>(p);
            parts[p].parts = static_cast<std::uint32_t>(parts.size());
            parts[p].epoch = epoch_;
        }
        t.chain = t.published = t.batch_end;
        t.batch.clear();
        t.batch_bytes = 0;
        out.emplace_back(i, std::move(parts));
    }
    pending_txns_ = 0;
    return out;
}

}  // namespace authsync::transport
