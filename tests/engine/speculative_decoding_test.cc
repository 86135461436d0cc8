// Self-speculative decoding on the CPU backend: lossless greedy output, exact deferred
// commits, and the fallback for models without heads.
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <random>

#include "engine/batch_decoder.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/generator.h"
#include "engine/model/model_weights.h"
#include "engine/state_cache.h"
#include "tests/engine/cpu_test_backend.h"
#include "tests/engine/speculation_checks.h"

namespace xlserve {
namespace {

using testing::GenerateWith;
using testing::MakeMtpModel;
using testing::RandomPrompt;

testing::BackendFactory CpuFactory() {
  return [](std::shared_ptr<const ModelWeights> w, int slots) -> std::unique_ptr<Backend> {
    return testing::MakeTestCpuBackend(std::move(w), slots);
  };
}

TEST_CASE("greedy speculation gives exactly the tokens of plain decoding") {
  testing::CheckGreedySpeculationIsLossless(CpuFactory());
}

TEST_CASE("one batch mixing plain and speculative sequences of different k matches each alone") {
  testing::CheckMixedBatchMatchesAlone(CpuFactory());
}

TEST_CASE("speculation stops exactly at max_new_tokens and at stop tokens") {
  auto backend = testing::MakeTestCpuBackend(MakeMtpModel(MtpHeadType::kMlstmBlock, true, 5));
  const std::vector<int32_t> prompt = RandomPrompt(9, 3);
  for (int max_new : {1, 2, 3, 5, 17}) {
    const GenerationResult plain = GenerateWith(backend.get(), prompt, SpeculationMode::kOff, 0, max_new);
    const GenerationResult spec = GenerateWith(backend.get(), prompt, SpeculationMode::kOn, 3, max_new);
    CHECK(spec.tokens == plain.tokens);
    CHECK(static_cast<int>(spec.tokens.size()) == max_new);
  }
  const GenerationResult plain = GenerateWith(backend.get(), prompt, SpeculationMode::kOff, 0, 30);
  auto cache = StateCache::Create(backend.get(), 1);
  REQUIRE(cache.ok());
  Generator generator(backend.get(), &*cache);
  GenerationRequest request;
  request.prompt_ids = prompt;
  request.max_new_tokens = 30;
  request.stop_token_ids = {plain.tokens[6]};
  request.speculation = SpeculationMode::kOn;
  auto spec = generator.Generate(request);
  REQUIRE(spec.ok());
  CHECK(spec->finish_reason == FinishReason::kStop);
  CHECK(spec->tokens.back() == plain.tokens[6]);
  CHECK(std::equal(spec->tokens.begin(), spec->tokens.end(), plain.tokens.begin()));
}

TEST_CASE("a deferred verify then commit(a) equals stepping a tokens one by one") {
  testing::CheckDeferredCommitEqualsStepping(CpuFactory(), 1e-5);
}

TEST_CASE("commit errors are reported") {
  auto backend = testing::MakeTestCpuBackend(MakeMtpModel(MtpHeadType::kMlstmBlock, false, 2), 2);
  const CommitInput none{0, 1};
  CHECK(backend->Commit(std::span<const CommitInput>(&none, 1)).code() ==
        absl::StatusCode::kFailedPrecondition);
  const std::vector<int32_t> toks = {5, 6, 7};
  SequenceInput v{0, toks, true, true, true};
  ForwardOutput out;
  REQUIRE(backend->Forward(std::span<const SequenceInput>(&v, 1), &out).ok());
  const CommitInput too_many{0, 4};
  CHECK(backend->Commit(std::span<const CommitInput>(&too_many, 1)).code() ==
        absl::StatusCode::kFailedPrecondition);
  const CommitInput bad_slot{7, 1};
  CHECK(backend->Commit(std::span<const CommitInput>(&bad_slot, 1)).code() ==
        absl::StatusCode::kOutOfRange);
}

TEST_CASE("speculative sampling is distributed as plain sampling") {
  testing::CheckSpeculativeSamplingDistribution(CpuFactory());
}

TEST_CASE("seeded sampling with adaptive speculation is reproducible") {
  auto backend = testing::MakeTestCpuBackend(MakeMtpModel(MtpHeadType::kMlstmBlock, false, 41));
  const std::vector<int32_t> prompt = RandomPrompt(6, 4);
  const GenerationResult a = GenerateWith(backend.get(), prompt, SpeculationMode::kAuto, 3, 30, 1.0f, 9);
  const GenerationResult b = GenerateWith(backend.get(), prompt, SpeculationMode::kAuto, 3, 30, 1.0f, 9);
  const GenerationResult c = GenerateWith(backend.get(), prompt, SpeculationMode::kAuto, 3, 30, 1.0f, 10);
  CHECK(a.tokens == b.tokens);
  CHECK(a.tokens != c.tokens);
}

TEST_CASE("a checkpoint without heads serves with speculation falling back to off") {
  auto weights = LoadModelWeights("tests/golden/models/f32_base");
  REQUIRE(weights.ok());
  auto backend = testing::MakeTestCpuBackend(*weights);
  const std::vector<int32_t> prompt = {5, 6, 7, 8};
  const GenerationResult plain = GenerateWith(backend.get(), prompt, SpeculationMode::kOff, 0);
  const GenerationResult spec = GenerateWith(backend.get(), prompt, SpeculationMode::kOn, 3);
  CHECK_FALSE(spec.speculative);
  CHECK(spec.tokens == plain.tokens);
  SequenceInput s{0, prompt, false, true, false};
  ForwardOutput out;
  CHECK(backend->Forward(std::span<const SequenceInput>(&s, 1), &out).code() ==
        absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace xlserve
