#include "authsync/pipeline/target_health.hpp"

#include <catch2/catch.hpp>

using namespace authsync::pipeline;
using namespace std::chrono_literals;
using Verdict = TargetHealth::Verdict;

namespace {

const TargetHealth::Clock::time_point t0{};

}  // namespace

TEST_CASE("TargetHealth without a limit waits for every target, as before fan-out's detach",
          "[unit][target_health]") {
    TargetHealth h;
    CHECK(h.failed("a", true, 1u << 30, 5, t0) == Verdict::Wait);
    CHECK(h.failed("a", true, 1u << 30, 5, t0 + 24h) == Verdict::Wait);
    CHECK(h.failed("a", false, 0, 5, t0 + 25h) == Verdict::Wait);
    CHECK_FALSE(h.detached("a"));
    CHECK(h.failing_since("a") == t0);
}

TEST_CASE("TargetHealth detaches a target that has failed for the limit's seconds",
          "[unit][target_health]") {
    TargetHealth h({30s, std::nullopt});
    CHECK(h.failed("a", true, 0, 3, t0) == Verdict::Wait);
    CHECK(h.failed("a", true, 0, 3, t0 + 29s) == Verdict::Wait);
    CHECK_FALSE(h.detached("a"));
    CHECK(h.failed("a", true, 0, 3, t0 + 30s) == Verdict::Detach);
    CHECK(h.detached("a"));
    CHECK(h.to_probe() == std::vector<std::string>{"a"});
    // It answers again and runs with the next session: a failure before any commit detaches
    // it again at once, without holding the others back for another 30 s.
    h.reattach("a");
    CHECK_FALSE(h.detached("a"));
    CHECK(h.failed("a", true, 0, 3, t0 + 45s) == Verdict::Detach);
    // After a commit its failures start over.
    h.reattach("a");
    h.recovered("a");
    CHECK_FALSE(h.failing_since("a"));
    CHECK(h.failed("a", true, 0, 3, t0 + 60s) == Verdict::Wait);
    CHECK(h.failing_since("a") == t0 + 60s);
}

TEST_CASE("TargetHealth detaches a target whose checkpoint holds the limit's bytes of WAL",
          "[unit][target_health]") {
    TargetHealth h({std::nullopt, 1000});
    CHECK(h.failed("a", true, 999, 2, t0) == Verdict::Wait);
    CHECK(h.failed("a", true, 999, 2, t0 + 1h) == Verdict::Wait);
    CHECK(h.failed("a", true, 1000, 2, t0 + 1h) == Verdict::Detach);
    // Either limit: whichever comes first.
    TargetHealth both({10s, 1000});
    CHECK(both.failed("b", true, 10, 2, t0) == Verdict::Wait);
    CHECK(both.failed("b", true, 10, 2, t0 + 10s) == Verdict::Detach);
}

TEST_CASE("TargetHealth fails a target that refuses changes for good until a reload",
          "[unit][target_health]") {
    TargetHealth h({60s, std::nullopt});
    CHECK(h.failed("a", false, 0, 3, t0) == Verdict::Fail);
    CHECK(h.detached("a"));
    CHECK(h.to_probe().empty());  // no probe brings it back
    h.clear_failed();
    CHECK_FALSE(h.detached("a"));
}

TEST_CASE("TargetHealth never detaches the last attached target", "[unit][target_health]") {
    TargetHealth h({1s, 1});
    CHECK(h.failed("a", true, 100, 1, t0 + 1h) == Verdict::Wait);
    CHECK(h.failed("a", false, 100, 1, t0 + 2h) == Verdict::Wait);
    CHECK_FALSE(h.detached("a"));
}

TEST_CASE("TargetHealth forgets a target removed from the config", "[unit][target_health]") {
    TargetHealth h({1s, std::nullopt});
    CHECK(h.failed("a", true, 0, 2, t0) == Verdict::Wait);
    CHECK(h.failed("a", true, 0, 2, t0 + 2s) == Verdict::Detach);
    h.forget("a");
    CHECK_FALSE(h.detached("a"));
    CHECK_FALSE(h.failing_since("a"));
    CHECK(h.to_probe().empty());
}

TEST_CASE("TargetHealth dates a stalled target's failure from its unanswered step",
          "[unit][target_health]") {
    TargetHealth h({30s, std::nullopt});
    // A step left unanswered from t0 and cut at t0 + 30s: failing since t0, detached at once.
    CHECK(h.failed("a", true, 0, 3, t0 + 30s, t0) == Verdict::Detach);
    CHECK(h.failing_since("a") == t0);
    // An earlier failure keeps its date; a stall never moves it later.
    TargetHealth k({30s, std::nullopt});
    CHECK(k.failed("b", true, 0, 3, t0) == Verdict::Wait);
    CHECK(k.failed("b", true, 0, 3, t0 + 31s, t0 + 1s) == Verdict::Detach);
    CHECK(k.failing_since("b") == t0);
    // A stall cut short of the limit (the clock says so) still waits.
    TargetHealth m({30s, std::nullopt});
    CHECK(m.failed("c", true, 0, 3, t0 + 20s, t0) == Verdict::Wait);
    // The last attached target is never left out, stalled or not.
    CHECK(m.failed("c", true, 0, 1, t0 + 40s, t0) == Verdict::Wait);
}

namespace {

using Work = TargetHealth::Work;

std::map<std::string, Work> batch(std::initializer_list<std::pair<const char*, Work>> work) {
    std::map<std::string, Work> m;
    for (const auto& [name, w] : work) m[name] = w;
    return m;
}

}  // namespace

TEST_CASE(
    "TargetHealth detaches a target slow per change once it has held the stream back "
    "for the limit's seconds",
    "[unit][target_health]") {
    TargetHealth h({3s, std::nullopt});
    // b: 10 changes in 400 ms (40 ms each); the others 1-2 ms per change.
    const auto slow = batch({{"a", {20ms, 10}}, {"b", {400ms, 10}}, {"c", {15ms, 10}}});
    CHECK_FALSE(h.batch_committed(slow, 0s, 0, 3, t0));
    CHECK_FALSE(h.batch_committed(slow, 5s, 0, 3, t0 + 2s));  // not for 3 s yet
    // Straggling for 3 s, but the stream is not behind that far: nobody is held back enough.
    CHECK_FALSE(h.batch_committed(slow, 2s, 0, 3, t0 + 3s));
    CHECK_FALSE(h.detached("b"));
    auto out = h.batch_committed(slow, 3s, 0, 3, t0 + 4s);
    REQUIRE(out);
    CHECK(out->name == "b");
    CHECK(out->since == t0);
    CHECK(out->batches == 4);
    CHECK(out->ratio == Approx(20.0));
    CHECK(h.detached("b"));
    CHECK(h.to_probe() == std::vector<std::string>{"b"});
    // The session that ends on it reports its failure: it stays detached.
    CHECK(h.failed("b", true, 0, 3, t0 + 4s) == Verdict::Detach);
}

TEST_CASE("TargetHealth does not take a target with more to write, or noise, for a straggler",
          "[unit][target_health]") {
    TargetHealth h({1s, std::nullopt});
    // a writes 1,000 changes in 900 ms, b 10 in 20 ms: a is busier, not slower per change.
    const auto busy = batch({{"a", {900ms, 1000}}, {"b", {20ms, 10}}});
    for (int i = 0; i < 10; ++i) CHECK_FALSE(h.batch_committed(busy, 60s, 0, 2, t0 + i * 1s));
    // Under the floor, whatever the ratio.
    const auto quick = batch({{"a", {40ms, 1}}, {"b", {1ms, 1}}});
    for (int i = 0; i < 10; ++i) CHECK_FALSE(h.batch_committed(quick, 60s, 0, 2, t0 + i * 1s));
    // A batch in which it is not slower ends the straggling: the clock starts again.
    const auto slow = batch({{"a", {300ms, 10}}, {"b", {20ms, 10}}});
    const auto even = batch({{"a", {30ms, 10}}, {"b", {20ms, 10}}});
    CHECK_FALSE(h.batch_committed(slow, 60s, 0, 2, t0 + 20s));
    CHECK_FALSE(h.batch_committed(even, 60s, 0, 2, t0 + 20500ms));
    CHECK_FALSE(h.batch_committed(slow, 60s, 0, 2, t0 + 21s));
    CHECK(h.batch_committed(slow, 60s, 0, 2, t0 + 22s));
    // Alone, or the last attached, or without a limit: never.
    TargetHealth none;
    CHECK_FALSE(none.batch_committed(slow, 60s, 1u << 30, 2, t0 + 1h));
    TargetHealth last({1s, std::nullopt});
    CHECK_FALSE(last.batch_committed(slow, 60s, 0, 1, t0));
    CHECK_FALSE(last.batch_committed(slow, 60s, 0, 1, t0 + 1h));
    CHECK_FALSE(last.batch_committed(batch({{"a", {300ms, 10}}}), 60s, 0, 2, t0 + 2h));
}

TEST_CASE("TargetHealth detaches a straggler once the stream is the limit's bytes behind",
          "[unit][target_health]") {
    TargetHealth h({std::nullopt, 1000});
    const auto slow = batch({{"a", {20ms, 10}}, {"b", {400ms, 10}}});
    CHECK_FALSE(h.batch_committed(slow, 0s, 5000, 2, t0));  // one batch is not a pattern
    CHECK_FALSE(h.batch_committed(slow, 0s, 999, 2, t0 + 1ms));
    auto out = h.batch_committed(slow, 0s, 1000, 2, t0 + 2ms);
    REQUIRE(out);
    CHECK(out->name == "b");
    CHECK(out->batches == 3);
}
