#include "engine/sampling/sampler.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/sampling/distribution.h"
#include "engine/sampling/philox.h"

namespace xlserve {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Sampler MakeSampler(const SamplingParams& params) {
  absl::StatusOr<Sampler> sampler = Sampler::Create(params);
  INFO(sampler.status().message());
  REQUIRE(sampler.ok());
  return *std::move(sampler);
}

int32_t SampleOk(Sampler& sampler, const std::vector<float>& logits,
                 const TokenHistory& history = {}) {
  absl::StatusOr<int32_t> token = sampler.Sample(logits, history);
  INFO(token.status().message());
  REQUIRE(token.ok());
  return *token;
}

// Draws `draws` tokens from `logits` with `params` and checks every token's count against the
// sampler's own p(·): count 0 where p = 0, else within 5 binomial standard deviations of
// draws * p (a false alarm per token has probability ~6e-7; the seed is fixed anyway).
void CheckFrequenciesMatch(const SamplingParams& params, const std::vector<float>& logits) {
  constexpr int kDraws = 100000;
  Sampler sampler = MakeSampler(params);
  std::vector<float> p;
  REQUIRE(sampler.Probabilities(logits, {}, &p).ok());
  std::vector<int> count(logits.size(), 0);
  for (int n = 0; n < kDraws; ++n) ++count[SampleOk(sampler, logits)];
  for (size_t i = 0; i < logits.size(); ++i) {
    INFO("token " << i << ": p = " << p[i] << ", count = " << count[i]);
    if (p[i] == 0.0f) {
      CHECK(count[i] == 0);
    } else {
      const double expected = kDraws * static_cast<double>(p[i]);
      const double sigma = std::sqrt(expected * (1.0 - p[i]));
      CHECK(std::abs(count[i] - expected) <= 5.0 * sigma);
    }
  }
}

const std::vector<float> kLogits = {1.2f, -0.3f, 2.0f, 0.1f, -1.5f, 1.9f, 0.0f, -0.8f};

TEST_CASE("Create rejects invalid parameters") {
  SamplingParams p;
  p.top_p = 0.0f;
  CHECK(Sampler::Create(p).status().code() == absl::StatusCode::kInvalidArgument);
  p = SamplingParams{};
  p.repetition_penalty = kNaN;
  CHECK(!Sampler::Create(p).ok());
}

TEST_CASE("greedy returns the penalised argmax, lowest id on ties, and takes no draw") {
  Sampler sampler = MakeSampler(SamplingParams{});
  CHECK(sampler.greedy());
  CHECK(SampleOk(sampler, {0.5f, 3.0f, 1.0f, 3.0f}) == 1);
  CHECK(SampleOk(sampler, {kNaN, -2.0f, -1.0f}) == 2);
  CHECK(sampler.draws_taken() == 0);

  SamplingParams p;
  p.repetition_penalty = 2.0f;
  Sampler penalised = MakeSampler(p);
  const std::vector<int32_t> generated = {1};
  CHECK(SampleOk(penalised, {0.5f, 3.0f, 2.0f}, {{}, generated}) == 2);  // 3 / 2 < 2
}

TEST_CASE("Sample is one draw from the stream and the inverse-CDF pick from Probabilities") {
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 12;
  p.top_p = 0.9f;
  p.min_p = 0.02f;
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.2f;
  p.frequency_penalty = 0.1f;
  p.seed = 99;
  Sampler sampler = MakeSampler(p);
  const std::vector<int32_t> prompt = {3, 4, 5};
  std::vector<int32_t> generated;
  for (uint64_t step = 0; step < 200; ++step) {
    std::vector<float> logits(32);
    for (size_t i = 0; i < logits.size(); ++i) {
      logits[i] = static_cast<float>(4.0 * PhiloxUniform(1000 + step, i));
    }
    std::vector<float> probs;
    REQUIRE(sampler.Probabilities(logits, {prompt, generated}, &probs).ok());
    REQUIRE(sampler.draws_taken() == step);
    const int32_t token = SampleOk(sampler, logits, {prompt, generated});
    CHECK(sampler.draws_taken() == step + 1);
    CHECK(token == SampleFromDistribution(probs, PhiloxUniform(99, step)));
    generated.push_back(token);
  }
}

TEST_CASE("the same seed reproduces a sequence, a different seed does not") {
  SamplingParams p;
  p.temperature = 1.0f;
  p.frequency_penalty = 0.3f;
  const auto run = [&](uint64_t seed) {
    p.seed = seed;
    Sampler sampler = MakeSampler(p);
    std::vector<int32_t> generated;
    for (int step = 0; step < 500; ++step) {
      generated.push_back(SampleOk(sampler, kLogits, {{}, generated}));
    }
    return generated;
  };
  const std::vector<int32_t> a = run(42);
  CHECK(run(42) == a);
  const std::vector<int32_t> b = run(43);
  int differing = 0;
  for (size_t i = 0; i < a.size(); ++i) differing += a[i] != b[i];
  // Independent streams agree at a step with probability well under 1/2.
  CHECK(differing > 100);
}

TEST_CASE("NextUniform and Sample share one stream") {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 5;
  Sampler sampler = MakeSampler(p);
  CHECK(sampler.NextUniform() == PhiloxUniform(5, 0));
  CHECK(sampler.NextUniform() == PhiloxUniform(5, 1));
  std::vector<float> probs;
  REQUIRE(sampler.Probabilities(kLogits, {}, &probs).ok());
  CHECK(SampleOk(sampler, kLogits) == SampleFromDistribution(probs, PhiloxUniform(5, 2)));
}

TEST_CASE("SkipDraws moves the stream as many draws as it is told, taken elsewhere") {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 6;
  Sampler sampler = MakeSampler(p);
  sampler.SkipDraws(1);
  CHECK(sampler.draws_taken() == 1);
  CHECK(sampler.NextUniform() == PhiloxUniform(6, 1));
  sampler.SkipDraws(40);
  CHECK(sampler.draws_taken() == 42);
  CHECK(sampler.NextUniform() == PhiloxUniform(6, 42));
}

TEST_CASE("empirical frequencies over 100k draws match p within 5 sigma") {
  SamplingParams p;
  p.seed = 2024;
  SECTION("plain softmax") {
    p.temperature = 1.0f;
    CheckFrequenciesMatch(p, kLogits);
  }
  SECTION("temperature 0.7, top-k 3: all mass on the top 3") {
    p.temperature = 0.7f;
    p.top_k = 3;
    CheckFrequenciesMatch(p, kLogits);
  }
  SECTION("top-p 0.8") {
    p.temperature = 1.0f;
    p.top_p = 0.8f;
    CheckFrequenciesMatch(p, kLogits);
  }
  SECTION("min-p 0.2 at temperature 1.5") {
    p.temperature = 1.5f;
    p.min_p = 0.2f;
    CheckFrequenciesMatch(p, kLogits);
  }
}

TEST_CASE("the plain-softmax frequencies are those of the softmax itself") {
  // Ties the sampler's p to an independent softmax, so the frequency test above cannot pass
  // merely by being self-consistent.
  SamplingParams p;
  p.temperature = 1.0f;
  Sampler sampler = MakeSampler(p);
  std::vector<float> probs;
  REQUIRE(sampler.Probabilities(kLogits, {}, &probs).ok());
  double z = 0.0;
  for (float l : kLogits) z += std::exp(static_cast<double>(l));
  for (size_t i = 0; i < kLogits.size(); ++i) {
    CHECK(probs[i] == Approx(std::exp(static_cast<double>(kLogits[i])) / z).epsilon(1e-6));
  }
}

TEST_CASE("bad rows and histories fail without taking a draw") {
  SamplingParams p;
  p.temperature = 1.0f;
  Sampler sampler = MakeSampler(p);

  CHECK(sampler.Sample(std::vector<float>{kNaN, kNaN}, {}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(!sampler.Sample({}, {}).ok());
  const std::vector<int32_t> out_of_range = {8};
  CHECK(!sampler.Sample(kLogits, {out_of_range, {}}).ok());
  std::vector<float> probs;
  CHECK(!sampler.Probabilities(kLogits, {{}, out_of_range}, &probs).ok());
  CHECK(sampler.draws_taken() == 0);

  Sampler greedy = MakeSampler(SamplingParams{});
  CHECK(!greedy.Sample(std::vector<float>{kNaN}, {}).ok());
}

TEST_CASE("NaN logits are never sampled") {
  SamplingParams p;
  p.temperature = 2.0f;
  Sampler sampler = MakeSampler(p);
  const std::vector<float> logits = {0.0f, kNaN, 0.1f, kNaN, -0.2f};
  for (int n = 0; n < 10000; ++n) {
    const int32_t token = SampleOk(sampler, logits);
    REQUIRE(token != 1);
    REQUIRE(token != 3);
  }
}

}  // namespace
}  // namespace xlserve
