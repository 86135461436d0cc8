#include "engine/sampling/sampling_params.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

namespace xlserve {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct BadCase {
  std::function<void(SamplingParams&)> set;
  std::string field;
  std::string value;
};

TEST_CASE("defaults and boundary values are valid") {
  CHECK(ValidateSamplingParams(SamplingParams{}).ok());
  SamplingParams p;
  p.temperature = 2.0f;
  p.top_k = 1;
  p.top_p = 1e-6f;
  p.min_p = 1.0f;
  p.repetition_penalty = 1e-3f;
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  p.seed = ~0ull;
  CHECK(ValidateSamplingParams(p).ok());
}

TEST_CASE("invalid values are rejected with a message naming the field and value") {
  const BadCase cases[] = {
      {[](SamplingParams& p) { p.temperature = -0.5f; }, "temperature", "-0.5"},
      {[](SamplingParams& p) { p.temperature = kNaN; }, "temperature", "nan"},
      {[](SamplingParams& p) { p.temperature = kInf; }, "temperature", "inf"},
      {[](SamplingParams& p) { p.top_k = -1; }, "top_k", "-1"},
      {[](SamplingParams& p) { p.top_p = 0.0f; }, "top_p", "0"},
      {[](SamplingParams& p) { p.top_p = 1.5f; }, "top_p", "1.5"},
      {[](SamplingParams& p) { p.top_p = kNaN; }, "top_p", "nan"},
      {[](SamplingParams& p) { p.min_p = -0.1f; }, "min_p", "-0.1"},
      {[](SamplingParams& p) { p.min_p = 1.25f; }, "min_p", "1.25"},
      {[](SamplingParams& p) { p.min_p = kNaN; }, "min_p", "nan"},
      {[](SamplingParams& p) { p.repetition_penalty = 0.0f; }, "repetition_penalty", "0"},
      {[](SamplingParams& p) { p.repetition_penalty = -1.0f; }, "repetition_penalty", "-1"},
      {[](SamplingParams& p) { p.repetition_penalty = kInf; }, "repetition_penalty", "inf"},
      {[](SamplingParams& p) { p.repetition_penalty = kNaN; }, "repetition_penalty", "nan"},
      {[](SamplingParams& p) { p.presence_penalty = kNaN; }, "presence_penalty", "nan"},
      {[](SamplingParams& p) { p.frequency_penalty = -kInf; }, "frequency_penalty", "-inf"},
  };
  for (const BadCase& c : cases) {
    SamplingParams p;
    c.set(p);
    const absl::Status s = ValidateSamplingParams(p);
    INFO(s.message());
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(s.message()).find(c.field + " = " + c.value) != std::string::npos);
  }
}

}  // namespace
}  // namespace xlserve
