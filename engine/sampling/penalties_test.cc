#include "engine/sampling/penalties.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace xlserve {
namespace {

TEST_CASE("repetition penalty divides positive and multiplies negative logits of seen tokens") {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  std::vector<float> logits = {3.0f, -1.5f, 0.0f, 4.0f, -2.0f};
  const std::vector<int32_t> prompt = {0, 1, 0};  // token 0 twice: penalised once
  const std::vector<int32_t> generated = {2, 0};
  REQUIRE(ApplyPenalties(p, {prompt, generated}, logits).ok());
  CHECK(logits == std::vector<float>{1.5f, -3.0f, 0.0f, 4.0f, -2.0f});
}

TEST_CASE("a repetition penalty below 1 favours seen tokens") {
  SamplingParams p;
  p.repetition_penalty = 0.5f;
  std::vector<float> logits = {3.0f, -1.5f};
  const std::vector<int32_t> generated = {0, 1};
  REQUIRE(ApplyPenalties(p, {{}, generated}, logits).ok());
  CHECK(logits == std::vector<float>{6.0f, -0.75f});
}

TEST_CASE("presence and frequency penalties count generated tokens only") {
  SamplingParams p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  const std::vector<int32_t> prompt = {0, 0, 3};
  const std::vector<int32_t> generated = {1, 2, 2, 2, 3};
  REQUIRE(ApplyPenalties(p, {prompt, generated}, logits).ok());
  CHECK(logits[0] == 1.0f);                        // prompt only
  CHECK(logits[1] == 1.0f - 0.25f - 0.5f);         // once
  CHECK(logits[2] == 1.0f - 3 * 0.25f - 0.5f);     // three times
  CHECK(logits[3] == 1.0f - 0.25f - 0.5f);         // prompt occurrences do not count
}

TEST_CASE("negative presence and frequency penalties raise logits") {
  SamplingParams p;
  p.presence_penalty = -1.0f;
  p.frequency_penalty = -0.5f;
  std::vector<float> logits = {0.0f, 0.0f};
  const std::vector<int32_t> generated = {1, 1};
  REQUIRE(ApplyPenalties(p, {{}, generated}, logits).ok());
  CHECK(logits == std::vector<float>{0.0f, 2.0f});
}

TEST_CASE("repetition penalty comes before presence and frequency") {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.25f;
  p.frequency_penalty = 0.5f;
  std::vector<float> logits = {2.0f};
  const std::vector<int32_t> generated = {0, 0};
  REQUIRE(ApplyPenalties(p, {{}, generated}, logits).ok());
  CHECK(logits[0] == 2.0f / 2.0f - 2 * 0.5f - 0.25f);
}

TEST_CASE("default params leave logits untouched, NaN included") {
  std::vector<float> logits = {1.0f, std::numeric_limits<float>::quiet_NaN(), -3.0f};
  const std::vector<int32_t> generated = {0, 1, 2};
  REQUIRE(ApplyPenalties(SamplingParams{}, {generated, generated}, logits).ok());
  CHECK(logits[0] == 1.0f);
  CHECK(std::isnan(logits[1]));
  CHECK(logits[2] == -3.0f);
}

TEST_CASE("history ids outside the vocabulary are rejected and logits left unchanged") {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  const std::vector<int32_t> prompt = {0, 1};
  const std::vector<int32_t> generated = {2, 9};
  absl::Status s = ApplyPenalties(p, {prompt, generated}, logits);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("generated[1] = 9") != std::string::npos);
  CHECK(logits == std::vector<float>{1.0f, 2.0f, 3.0f});

  const std::vector<int32_t> negative = {-1};
  s = ApplyPenalties(p, {negative, {}}, logits);
  CHECK(std::string(s.message()).find("prompt[0] = -1") != std::string::npos);
}

}  // namespace
}  // namespace xlserve
