// CPU backend behaviour beyond the golden numbers: prefill/step equivalence, batching,
// slot isolation and input errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "engine/cpu/cpu_backend.h"
#include "engine/model/model_weights.h"
#include "engine/sampling/logprobs.h"
#include "engine/state_cache.h"

namespace xlserve {
namespace {

constexpr const char* kModel = "tests/golden/models/f32_heads4_wide";

std::shared_ptr<const ModelWeights> Weights() {
  static std::shared_ptr<const ModelWeights> weights = [] {
    auto w = LoadModelWeights(kModel);
    REQUIRE(w.ok());
    return *w;
  }();
  return weights;
}

std::unique_ptr<CpuBackend> MakeBackend(int chunk_size, int slots) {
  CpuBackendOptions options;
  options.chunk_size = chunk_size;
  options.num_threads = 2;
  auto backend = CpuBackend::Create(Weights(), options);
  REQUIRE(backend.ok());
  REQUIRE((*backend)->AllocateSlots(slots).ok());
  return std::move(*backend);
}

std::vector<int32_t> RandomTokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, Weights()->config.vocab_size - 1);
  std::vector<int32_t> t(n);
  for (int32_t& v : t) v = dist(rng);
  return t;
}

std::vector<float> ReadState(const Backend& b, int slot) {
  std::vector<float> s(b.state_layout().slot_floats());
  REQUIRE(b.ReadSlot(slot, s).ok());
  return s;
}

double MaxRelDiff(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / (1.0 + std::fabs(double(b[i]))));
  }
  return worst;
}

TEST_CASE("prefill in chunks of any size equals stepping every token") {
  const std::vector<int32_t> prompt = RandomTokens(90, 1);
  // Reference: one token per forward call, the pure recurrence.
  auto stepper = MakeBackend(1, 1);
  ForwardOutput out;
  std::vector<std::vector<float>> step_logits;
  for (int32_t t : prompt) {
    SequenceInput s{0, std::span<const int32_t>(&t, 1), false};
    REQUIRE(stepper->Forward(std::span<const SequenceInput>(&s, 1), &out).ok());
    step_logits.emplace_back(out.LastRow(0).begin(), out.LastRow(0).end());
  }
  const std::vector<float> step_state = ReadState(*stepper, 0);

  for (int chunk : {2, 3, 16, 64, 90, 128}) {
    INFO("chunk " << chunk);
    auto prefiller = MakeBackend(chunk, 1);
    SequenceInput s{0, prompt, true};
    REQUIRE(prefiller->Forward(std::span<const SequenceInput>(&s, 1), &out).ok());
    REQUIRE(out.row_offset.back() == static_cast<int>(prompt.size()));
    double worst_logits = 0;
    for (size_t t = 0; t < prompt.size(); ++t) {
      worst_logits = std::max(worst_logits, MaxRelDiff(out.Row(static_cast<int>(t)), step_logits[t]));
    }
    // Same maths in a different association order; fp32 rounding over 90 tokens stays ~1e-6.
    CHECK(worst_logits < 1e-4);
    CHECK(MaxRelDiff(ReadState(*prefiller, 0), step_state) < 1e-4);

    // Continuing with single steps from the prefilled state matches too.
    const std::vector<int32_t> more = RandomTokens(5, 2);
    for (int32_t t : more) {
      SequenceInput a{0, std::span<const int32_t>(&t, 1), false};
      REQUIRE(prefiller->Forward(std::span<const SequenceInput>(&a, 1), &out).ok());
    }
    auto stepper2 = MakeBackend(1, 1);
    REQUIRE(stepper2->WriteSlot(0, step_state).ok());
    ForwardOutput out2;
    for (int32_t t : more) {
      SequenceInput a{0, std::span<const int32_t>(&t, 1), false};
      REQUIRE(stepper2->Forward(std::span<const SequenceInput>(&a, 1), &out2).ok());
    }
    CHECK(MaxRelDiff(out.LastRow(0), out2.LastRow(0)) < 1e-4);
  }
}

TEST_CASE("a batch of sequences gives exactly what each gives alone") {
  const std::vector<std::vector<int32_t>> prompts = {RandomTokens(1, 3), RandomTokens(17, 4),
                                                     RandomTokens(70, 5), RandomTokens(4, 6)};
  auto batched = MakeBackend(16, 8);
  std::vector<SequenceInput> batch;
  const int slots[] = {5, 0, 7, 2};  // slots out of order, some left unused
  for (size_t i = 0; i < prompts.size(); ++i) batch.push_back({slots[i], prompts[i], i == 1});
  ForwardOutput together;
  REQUIRE(batched->Forward(batch, &together).ok());

  for (size_t i = 0; i < prompts.size(); ++i) {
    auto alone = MakeBackend(16, 1);
    SequenceInput s{0, prompts[i], i == 1};
    ForwardOutput out;
    REQUIRE(alone->Forward(std::span<const SequenceInput>(&s, 1), &out).ok());
    const int rows = out.row_offset[1];
    REQUIRE(together.row_offset[i + 1] - together.row_offset[i] == rows);
    for (int r = 0; r < rows; ++r) {
      const auto a = together.Row(together.row_offset[i] + r);
      const auto b = out.Row(r);
      // Each row's arithmetic is independent of the others, so equality is exact.
      REQUIRE(std::equal(a.begin(), a.end(), b.begin()));
    }
    const std::vector<float> sa = ReadState(*batched, slots[i]);
    const std::vector<float> sb = ReadState(*alone, 0);
    REQUIRE(sa == sb);
  }
  // Untouched slots stay empty.
  for (int s : {1, 3, 4, 6}) {
    for (float v : ReadState(*batched, s)) REQUIRE(v == 0.0f);
  }
}

TEST_CASE("a reacquired slot starts from the empty state") {
  auto backend = MakeBackend(16, 2);
  auto cache = StateCache::Create(backend.get(), 2);
  REQUIRE(cache.ok());
  auto slot = cache->Acquire();
  REQUIRE(slot.ok());
  const std::vector<int32_t> prompt = RandomTokens(12, 8);
  SequenceInput s{*slot, prompt, false};
  ForwardOutput first;
  REQUIRE(backend->Forward(std::span<const SequenceInput>(&s, 1), &first).ok());
  REQUIRE(cache->Release(*slot).ok());
  auto again = cache->Acquire();
  REQUIRE(again.ok());
  CHECK(*again == *slot);
  ForwardOutput second;
  s.slot = *again;
  REQUIRE(backend->Forward(std::span<const SequenceInput>(&s, 1), &second).ok());
  CHECK(first.logits == second.logits);
}

TEST_CASE("state cache hands out each slot once and refuses when full") {
  auto backend = MakeBackend(16, 1);
  auto cache = StateCache::Create(backend.get(), 3);
  REQUIRE(cache.ok());
  std::vector<int> got;
  for (int i = 0; i < 3; ++i) {
    auto s = cache->Acquire();
    REQUIRE(s.ok());
    got.push_back(*s);
  }
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<int>{0, 1, 2});
  auto full = cache->Acquire();
  CHECK(full.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(cache->Release(1).ok());
  CHECK(cache->Release(1).code() == absl::StatusCode::kFailedPrecondition);
  CHECK(cache->Release(17).code() == absl::StatusCode::kFailedPrecondition);
  CHECK(cache->num_free() == 1);
  CHECK(StateCache::Create(backend.get(), 0).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("bad forward inputs are errors, not crashes") {
  auto backend = MakeBackend(16, 2);
  ForwardOutput out;
  const int32_t vocab = Weights()->config.vocab_size;
  const std::vector<int32_t> bad = {1, vocab};
  SequenceInput s{0, bad, false};
  CHECK(backend->Forward(std::span<const SequenceInput>(&s, 1), &out).code() ==
        absl::StatusCode::kOutOfRange);
  const std::vector<int32_t> neg = {-1};
  s.tokens = neg;
  CHECK(backend->Forward(std::span<const SequenceInput>(&s, 1), &out).code() ==
        absl::StatusCode::kOutOfRange);
  const std::vector<int32_t> ok = {1, 2};
  std::vector<SequenceInput> dup = {{0, ok, false}, {0, ok, false}};
  CHECK(backend->Forward(dup, &out).code() == absl::StatusCode::kInvalidArgument);
  s = {5, ok, false};
  CHECK(backend->Forward(std::span<const SequenceInput>(&s, 1), &out).code() ==
        absl::StatusCode::kOutOfRange);
  s = {0, std::span<const int32_t>(), false};
  CHECK(backend->Forward(std::span<const SequenceInput>(&s, 1), &out).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(backend->Forward({}, &out).code() == absl::StatusCode::kInvalidArgument);
  std::vector<float> wrong(3);
  CHECK(backend->ReadSlot(0, wrong).code() == absl::StatusCode::kInvalidArgument);
  CHECK(backend->WriteSlot(9, wrong).code() == absl::StatusCode::kOutOfRange);
}

TEST_CASE("every returned row carries its argmax") {
  auto weights = LoadModelWeights("tests/golden/models/f32_base");
  REQUIRE(weights.ok());
  auto backend = CpuBackend::Create(*weights, CpuBackendOptions{});
  REQUIRE(backend.ok());
  REQUIRE((*backend)->AllocateSlots(2).ok());
  const std::vector<int32_t> a = {5, 6, 7}, b = {9};
  const std::vector<SequenceInput> batch = {{0, a, true}, {1, b, false}};
  ForwardOutput out;
  REQUIRE((*backend)->Forward(batch, &out).ok());
  REQUIRE(out.argmax.size() == 4);
  for (int r = 0; r < 4; ++r) CHECK(out.argmax[r] == Argmax(out.Row(r)));
}

}  // namespace
}  // namespace xlserve
