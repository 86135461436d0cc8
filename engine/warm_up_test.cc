#include "engine/warm_up.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "engine/testing/fake_backend.h"

namespace xlserve {
namespace {

using testing::FakeBackend;
using testing::FakeBackendOptions;

// A backend whose passes take 10 ms on a simulated clock, with choices left open as `choices`.
struct Simulated {
  explicit Simulated(std::vector<FakeBackendOptions::Choice> choices) {
    FakeBackendOptions o;
    o.wants_warm_up = true;
    o.pass_seconds = 0.010;
    o.clock = &now;
    o.choices = std::move(choices);
    backend = std::make_unique<FakeBackend>(o);
    REQUIRE(backend->AllocateSlots(8).ok());
  }
  absl::Status WarmUp() {
    WarmUpOptions w;
    w.max_batch = 4;
    w.max_step_tokens = 128;
    w.clock = [this] { return now; };
    return xlserve::WarmUp(backend.get(), w, [this](const std::string& line) { lines.push_back(line); });
  }
  int PassesOf(int rows) const {
    int n = 0;
    for (const auto& call : backend->forwards) {
      int total = 0;
      for (const auto& row : call) total += row.tokens;
      n += total == rows;
    }
    return n;
  }
  double now = 0;
  std::unique_ptr<FakeBackend> backend;
  std::vector<std::string> lines;  // warm-up's progress
};

TEST_CASE("warm-up settles a choice timing left open by the pass that opened it, on the fastest candidate") {
  // 64 rows: a ladder pass; candidate 1 makes that pass fastest, though timing picked 0.
  Simulated sim({{64, {0.004, 0.001, 0.003}}});
  REQUIRE(sim.WarmUp().ok());
  const FakeBackend::ChoiceState& c = sim.backend->choice_states[0];
  CHECK(c.settled);
  CHECK(c.taken == 1);
  REQUIRE(c.pass_seconds.size() == 3);
  CHECK(c.pass_seconds[0] == Approx(0.014));
  CHECK(c.pass_seconds[1] == Approx(0.011));
  CHECK(c.pass_seconds[2] == Approx(0.013));
  CHECK(sim.backend->OpenChoices().empty());
  // The opening pass, then four rounds of the three candidates: bounded work.
  CHECK(sim.PassesOf(64) == 1 + 4 * 3);
  CHECK_FALSE(sim.backend->tuning);
  CHECK(std::count(sim.lines.begin(), sim.lines.end(),
                   "warm-up: passes settled 1 choice(s) that timing left open; 1 overruled timing's pick") == 1);
}

TEST_CASE("warm-up judges an open choice only by a pass that runs its shape") {
  // 48 rows: opened by its ladder pass; 1096 rows: never run, so never opened; 1 row: opened by
  // the batch-1 decode step, which warm-up captures as a graph, so it keeps timing's pick.
  Simulated sim({{48, {0.002, 0.003}}, {1096, {0.002, 0.001}}, {1, {0.002, 0.001}}});
  REQUIRE(sim.WarmUp().ok());
  const auto& states = sim.backend->choice_states;
  CHECK(states[0].settled);
  CHECK(states[0].taken == 0);
  CHECK(states[0].pass_seconds[0] < states[0].pass_seconds[1]);
  CHECK_FALSE(states[1].opened);
  CHECK(states[2].opened);
  CHECK_FALSE(states[2].settled);
  CHECK(states[2].taken == 0);
  // Passes of other sizes ran as often as without any open choice.
  Simulated plain({});
  REQUIRE(plain.WarmUp().ok());
  CHECK(sim.PassesOf(16) == plain.PassesOf(16));
  CHECK(sim.PassesOf(48) == plain.PassesOf(48) + 4 * 2);
}

TEST_CASE("warm-up passes over an open choice that settling another closed") {
  // Two choices of the 64-row pass: settling the first on its candidate 1 closes the second (a
  // SwiGLU epilogue taken makes its product's choice moot), which then gets no passes.
  Simulated sim({{64, {0.004, 0.001}, /*closes=*/1}, {64, {0.001, 0.002}}});
  REQUIRE(sim.WarmUp().ok());
  const auto& states = sim.backend->choice_states;
  CHECK(states[0].settled);
  CHECK(states[0].taken == 1);
  CHECK(states[1].settled);
  CHECK(states[1].pass_seconds.empty());
  CHECK(sim.backend->OpenChoices().empty());
  CHECK(sim.PassesOf(64) == 1 + 4 * 2);
  CHECK(std::count(sim.lines.begin(), sim.lines.end(),
                   "warm-up: passes settled 1 choice(s) that timing left open; 1 overruled timing's pick") == 1);
  // Settled on its first candidate, the first closes nothing: both get their passes.
  Simulated kept({{64, {0.001, 0.004}, /*closes=*/1}, {64, {0.002, 0.001}}});
  REQUIRE(kept.WarmUp().ok());
  CHECK(kept.backend->choice_states[0].taken == 0);
  CHECK(kept.backend->choice_states[1].taken == 1);
  CHECK_FALSE(kept.backend->choice_states[1].pass_seconds.empty());
  CHECK(kept.PassesOf(64) == 1 + 2 * 4 * 2);
}

TEST_CASE("warm-up settles the shapes of captured small steps by a ladder pass of as many rows") {
  // 4 rows: a decode step of batch 4 and a verify of 4 tokens, both captured as graphs; the
  // 4-row ladder pass opens the choice first and settles it on the fastest candidate.
  Simulated sim({{4, {0.003, 0.001}}});
  REQUIRE(sim.WarmUp().ok());
  const FakeBackend::ChoiceState& c = sim.backend->choice_states[0];
  CHECK(c.settled);
  CHECK(c.taken == 1);
  CHECK(sim.backend->OpenChoices().empty());
}

TEST_CASE("warm-up captures each bucket step after every bucket step has grown its buffers") {
  // A graph backend captures a shape on its second run and replays it after; a buffer grown by a
  // shape not run before stales every graph captured until then. So once the last new shape has
  // run, each shape must still run three times: eagerly, captured, replayed.
  FakeBackendOptions o;
  o.wants_warm_up = true;
  o.mtp_heads = 3;
  FakeBackend backend(o);
  REQUIRE(backend.AllocateSlots(8).ok());
  WarmUpOptions w;
  w.max_batch = 4;
  w.max_step_tokens = 64;
  w.max_draft = 3;
  REQUIRE(WarmUp(&backend, w, nullptr).ok());
  // The shape of a call that a graph backend replays: sequences, tokens each, verify or decode.
  struct Shape {
    size_t seqs;
    int len;
    bool verify;
    auto operator<=>(const Shape&) const = default;
  };
  std::vector<std::optional<Shape>> shapes;
  for (const auto& call : backend.forwards) {
    std::optional<Shape> shape = Shape{call.size(), call.front().tokens, call.front().defer};
    for (const auto& row : call) {
      if (row.tokens != shape->len || row.defer != shape->verify || !(row.tokens_only || row.defer)) shape.reset();
    }
    if (shape && shape->len > 1 && !shape->verify) shape.reset();
    shapes.push_back(shape);
  }
  size_t last_new = 0;
  std::vector<Shape> seen;
  for (size_t i = 0; i < shapes.size(); ++i) {
    if (shapes[i] && std::find(seen.begin(), seen.end(), *shapes[i]) == seen.end()) {
      seen.push_back(*shapes[i]);
      last_new = i;
    }
  }
  // Batches 1, 2 and 4: a decode step and verifies of 1-4 tokens.
  REQUIRE(seen.size() == 3 * 5);
  for (const Shape& shape : seen) {
    INFO(shape.seqs << " sequences of " << shape.len << (shape.verify ? " tokens, verify" : " token, decode"));
    CHECK(std::count(shapes.begin() + last_new + 1, shapes.end(), std::optional<Shape>(shape)) >= 3);
  }
}

}  // namespace
}  // namespace xlserve
