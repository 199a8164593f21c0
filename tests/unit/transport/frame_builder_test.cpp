// FrameBuilder (transport/frame_builder.hpp) fed with transactions captured from PostgreSQL 15:
// what each target's frame holds, chains, the skip of what a subject holds, and parts.
#include "authsync/transport/frame_builder.hpp"

#include <catch2/catch.hpp>

#include <functional>

#include "authsync/core/error.hpp"
#include "authsync/pgoutput/decoder.hpp"
#include "fixtures.hpp"

using namespace authsync;
using transport::Frame;
using transport::FrameBuilder;

namespace {

std::string text_of(const test::Bytes& b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

std::string kind_of(const std::string& bytes) {
    pgoutput::Decoder decoder;
    return pgoutput::message_name(
        decoder.decode(std::as_bytes(std::span(bytes.data(), bytes.size()))));
}

// Feeds every message of a fixture; each change (counted from 0) goes to the targets
// `route` names. Returns the last Commit's end_lsn.
Lsn feed(FrameBuilder& b, const std::string& fixture,
         const std::function<std::vector<std::size_t>(int)>& route) {
    pgoutput::Decoder decoder;
    int change = 0;
    Lsn end;
    for (const auto& raw : test::load_hex_fixture(fixture)) {
        const auto bytes = text_of(raw);
        const auto m = decoder.decode(raw);
        if (std::holds_alternative<pgoutput::Begin>(m)) {
            b.begin(bytes);
        } else if (const auto* c = std::get_if<pgoutput::Commit>(&m)) {
            b.commit(bytes, c->end_lsn);
            end = c->end_lsn;
        } else if (const auto* r = std::get_if<pgoutput::Relation>(&m)) {
            std::vector<std::uint32_t> types;
            for (const auto& col : r->columns) types.push_back(col.type_id);
            b.relation(r->relation_id, bytes, types);
        } else if (const auto* t = std::get_if<pgoutput::Type>(&m)) {
            b.type(t->type_id, bytes);
        } else if (const auto* i = std::get_if<pgoutput::Insert>(&m)) {
            for (auto target : route(change)) b.change(target, {i->relation_id}, bytes);
            ++change;
        } else if (const auto* u = std::get_if<pgoutput::Update>(&m)) {
            for (auto target : route(change)) b.change(target, {u->relation_id}, bytes);
            ++change;
        } else if (const auto* d = std::get_if<pgoutput::Delete>(&m)) {
            for (auto target : route(change)) b.change(target, {d->relation_id}, bytes);
            ++change;
        }
    }
    return end;
}

std::vector<std::string> kinds(const Frame& f) {
    std::vector<std::string> out;
    for (const auto& m : f.messages) out.push_back(kind_of(m));
    return out;
}

}  // namespace

TEST_CASE("FrameBuilder: a frame per target that a transaction reached, self-contained",
          "[unit][frame_builder]") {
    FrameBuilder b(3, 1 << 20, 42);
    for (std::size_t t = 0; t < 3; ++t) b.start_target(t, Lsn(0x100), Lsn{});
    // Even changes to target 0, odd ones to target 2; target 1 gets nothing.
    const auto end = feed(b, "pgoutput/insert.hex", [](int i) {
        return std::vector<std::size_t>{static_cast<std::size_t>(i % 2 == 0 ? 0 : 2)};
    });
    CHECK(b.pending_transactions() == 1);
    CHECK(b.pending_end() == end);
    auto frames = b.take();
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].first == 0);
    CHECK(frames[1].first == 2);
    for (const auto& [t, parts] : frames) {
        REQUIRE(parts.size() == 1);
        const auto& f = parts.front();
        CHECK(f.end_lsn == end);
        CHECK(f.prev_end_lsn == Lsn(0x100));
        CHECK(f.epoch == 42);
        CHECK(f.parts == 1);
        const auto k = kinds(f);
        REQUIRE(k.size() >= 4);
        CHECK(k.front() == "Begin");
        CHECK(k[1] == "Relation");  // before the first change of its table
        CHECK(k.back() == "Commit");
        CHECK(std::count(k.begin(), k.end(), "Relation") == 1);
        // Round trip through the wire form.
        CHECK(transport::decode_frame(transport::encode_frame(f)).messages == f.messages);
    }
    // The chains moved on; nothing is pending.
    CHECK(b.chain(0) == end);
    CHECK(b.chain(1) == Lsn(0x100));
    CHECK(b.pending_transactions() == 0);
    CHECK(b.take().empty());
}

TEST_CASE("FrameBuilder: what a subject holds is not built again, and chains link frames",
          "[unit][frame_builder]") {
    const auto fixture = test::load_hex_fixture("pgoutput/insert.hex");
    pgoutput::Decoder decoder;
    const auto end = std::get<pgoutput::Commit>(decoder.decode(fixture.back())).end_lsn;
    FrameBuilder b(2, 1 << 20, 7);
    b.start_target(0, end, end);              // stored already (before a restart)
    b.start_target(1, Lsn(0x10), Lsn(0x10));  // behind it
    const auto to_both = [](int) { return std::vector<std::size_t>{0, 1}; };
    feed(b, "pgoutput/insert.hex", to_both);
    auto frames = b.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].first == 1);
    // The same transaction once more (as if decoded again): target 1 holds it now.
    feed(b, "pgoutput/insert.hex", to_both);
    CHECK(b.pending_transactions() == 1);  // still to acknowledge
    CHECK(b.take().empty());
}

TEST_CASE("FrameBuilder: a Relation re-sent mid-stream goes with the next change again",
          "[unit][frame_builder]") {
    FrameBuilder b(1, 1 << 20, 1);
    b.start_target(0, Lsn(0x1), Lsn{});
    feed(b, "pgoutput/relation_resent.hex", [](int) { return std::vector<std::size_t>{0}; });
    auto frames = b.take();
    REQUIRE(frames.size() == 1);
    const auto k = kinds(frames[0].second.front());
    // Every transaction carries its table's Relation; the re-sent one goes with the change
    // after it.
    const auto relations = std::count(k.begin(), k.end(), "Relation");
    const auto begins = std::count(k.begin(), k.end(), "Begin");
    CHECK(begins >= 2);
    CHECK(relations >= begins);
    // A change's table always has its Relation earlier in the frame.
    bool relation_seen = false;
    for (const auto& kind : k) {
        if (kind == "Begin") relation_seen = false;
        if (kind == "Relation") relation_seen = true;
        if (kind == "Insert" || kind == "Update" || kind == "Delete") CHECK(relation_seen);
    }
}

TEST_CASE("FrameBuilder: a custom type's Type message goes with its table's Relation",
          "[unit][frame_builder]") {
    FrameBuilder b(1, 1 << 20, 1);
    b.start_target(0, Lsn(0x1), Lsn{});
    feed(b, "pgoutput/type.hex", [](int) { return std::vector<std::size_t>{0}; });
    auto frames = b.take();
    REQUIRE(frames.size() == 1);
    const auto k = kinds(frames[0].second.front());
    const auto type_at = std::find(k.begin(), k.end(), "Type");
    const auto relation_at = std::find(k.begin(), k.end(), "Relation");
    REQUIRE(type_at != k.end());
    CHECK(type_at < relation_at);
}

TEST_CASE("FrameBuilder: a large batch goes in parts that each fit, a message too large stops",
          "[unit][frame_builder]") {
    const std::size_t max = 250;
    FrameBuilder b(1, max, 9);
    b.start_target(0, Lsn(0x1), Lsn{});
    const auto end =
        feed(b, "pgoutput/insert.hex", [](int) { return std::vector<std::size_t>{0}; });
    auto frames = b.take();
    REQUIRE(frames.size() == 1);
    const auto& parts = frames[0].second;
    REQUIRE(parts.size() > 1);
    std::vector<std::string> all;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        CHECK(parts[i].part == i);
        CHECK(parts[i].parts == parts.size());
        CHECK(parts[i].end_lsn == end);
        CHECK(parts[i].prev_end_lsn == Lsn(0x1));
        CHECK(parts[i].epoch == 9);
        CHECK(transport::encode_frame(parts[i]).size() <= max);
        all.insert(all.end(), parts[i].messages.begin(), parts[i].messages.end());
    }
    CHECK(kind_of(all.front()) == "Begin");
    CHECK(kind_of(all.back()) == "Commit");

    FrameBuilder tiny(1, 48, 9);
    tiny.start_target(0, Lsn(0x1), Lsn{});
    feed(tiny, "pgoutput/insert.hex", [](int) { return std::vector<std::size_t>{0}; });
    CHECK_THROWS_WITH(tiny.take(), Catch::Contains("raise max_payload"));
}

TEST_CASE("FrameBuilder: a change before its Relation message is refused",
          "[unit][frame_builder]") {
    FrameBuilder b(1, 1 << 20, 1);
    b.start_target(0, Lsn(0x1), Lsn{});
    b.begin("B");
    CHECK_THROWS_AS(b.change(0, {16384}, "I"), ProtocolError);
}

TEST_CASE("FrameBuilder: a mark names the chain and how far the source covered the target",
          "[unit][frame_builder]") {
    FrameBuilder b(2, 1 << 20, 7);
    b.start_target(0, Lsn(0x100), Lsn(0x100));
    b.start_target(1, Lsn(0x100), Lsn(0x100));
    // Nothing covered past the chain: no mark (its end must be past its predecessor).
    CHECK_FALSE(b.mark(0, Lsn(0x100)).has_value());
    const auto to_first = [](int) { return std::vector<std::size_t>{0}; };
    const auto end = feed(b, "pgoutput/insert.hex", to_first);
    // A transaction for target 0 waits: no mark for it; target 1 got nothing from it.
    CHECK_FALSE(b.mark(0, end).has_value());
    auto m1 = b.mark(1, end);
    REQUIRE(m1.has_value());
    CHECK(m1->prev_end_lsn == Lsn(0x100));
    CHECK(m1->end_lsn == end);
    CHECK(m1->messages.empty());
    CHECK(m1->epoch == 7);
    CHECK(m1->part == 0);
    CHECK(m1->parts == 1);
    // It is a valid frame to every sink that reads this format.
    const auto decoded = transport::decode_frame(transport::encode_frame(*m1));
    CHECK(decoded.end_lsn == end);
    CHECK(decoded.messages.empty());

    auto frames = b.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].first == 0);
    // A mark does not move the chain: the next frame names the last one with changes.
    const auto later = Lsn(end.value + 0x1000);
    auto m0 = b.mark(0, later);
    REQUIRE(m0.has_value());
    CHECK(m0->prev_end_lsn == end);
    CHECK(b.chain(0) == end);
    CHECK(b.mark(1, later)->prev_end_lsn == Lsn(0x100));
    CHECK(transport::mark_message_id("s", "t", *m0, 1) !=
          transport::mark_message_id("s", "t", *m0, 2));
    CHECK(transport::mark_message_id("s", "t", *m0, 1) !=
          transport::frame_message_id("s", "t", *m0));
}

TEST_CASE("FrameBuilder: a restarted source resumes each chain from the subject's last message",
          "[unit][frame_builder]") {
    FrameBuilder b(3, 1 << 20, 9);
    Frame whole;  // a frame stored whole
    whole.end_lsn = Lsn(0x300);
    whole.prev_end_lsn = Lsn(0x200);
    whole.messages = {"B", "C"};
    b.resume_target(0, whole);
    CHECK(b.chain(0) == Lsn(0x300));
    Frame cut = whole;  // its source died before its last part: published again whole
    cut.part = 0;
    cut.parts = 2;
    b.resume_target(1, cut);
    CHECK(b.chain(1) == Lsn(0x200));
    Frame mark;  // a mark: the chain it names, and nothing published again up to its end
    mark.end_lsn = Lsn(0x900);
    mark.prev_end_lsn = Lsn(0x300);
    b.resume_target(2, mark);
    CHECK(b.chain(2) == Lsn(0x300));
    CHECK_FALSE(b.mark(2, Lsn(0x300)).has_value());
    CHECK(b.mark(2, Lsn(0xA00))->prev_end_lsn == Lsn(0x300));
}
