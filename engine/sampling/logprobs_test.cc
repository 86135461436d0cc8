#include "engine/sampling/logprobs.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

namespace xlserve {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

TEST_CASE("Argmax picks the lowest index among equal maxima and skips NaN") {
  CHECK(Argmax(std::vector<float>{1.0f, 3.0f, 2.0f, 3.0f}) == 1);
  CHECK(Argmax(std::vector<float>{kNaN, -5.0f, kNaN, -4.0f}) == 3);
  CHECK(Argmax(std::vector<float>{1.0f, kInf, kInf}) == 1);
  CHECK(Argmax(std::vector<float>{-kInf, -kInf}) == -1);
  CHECK(Argmax(std::vector<float>{kNaN}) == -1);
  CHECK(Argmax(std::vector<float>{}) == -1);
}

TEST_CASE("LogSoftmax matches log(softmax) and normalises") {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 30.0f, -40.0f};
  std::vector<float> out(logits.size());
  REQUIRE(LogSoftmax(logits, out).ok());
  double z = 0.0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  double mass = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    CHECK(out[i] == Approx(logits[i] - std::log(z)).epsilon(1e-6));
    mass += std::exp(static_cast<double>(out[i]));
  }
  CHECK(mass == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("LogSoftmax works in place and handles non-finite logits") {
  std::vector<float> row = {0.0f, kNaN, 0.0f, -kInf};
  REQUIRE(LogSoftmax(row, row).ok());
  CHECK(row[0] == Approx(-std::log(2.0)));
  CHECK(row[1] == -kInf);
  CHECK(row[2] == Approx(-std::log(2.0)));
  CHECK(row[3] == -kInf);

  std::vector<float> infinite = {kInf, 5.0f, kInf, kInf};
  REQUIRE(LogSoftmax(infinite, infinite).ok());
  CHECK(infinite[0] == Approx(-std::log(3.0)));
  CHECK(infinite[1] == -kInf);

  std::vector<float> unusable = {kNaN, -kInf};
  std::vector<float> out = {7.0f, 7.0f};
  CHECK(LogSoftmax(unusable, out).code() == absl::StatusCode::kInvalidArgument);
  CHECK(out == std::vector<float>{7.0f, 7.0f});
  CHECK(LogSoftmax(std::vector<float>{1.0f}, out).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("TopLogprobs lists the n largest, ties by lower id, NaN last") {
  const std::vector<float> lp = {-2.0f, -0.5f, kNaN, -0.5f, -3.0f};
  const std::vector<TokenLogprob> top = TopLogprobs(lp, 3);
  REQUIRE(top.size() == 3);
  CHECK(top[0].token == 1);
  CHECK(top[1].token == 3);
  CHECK(top[2].token == 0);
  CHECK(top[2].logprob == -2.0f);

  const std::vector<TokenLogprob> all = TopLogprobs(lp, 10);
  REQUIRE(all.size() == lp.size());
  CHECK(all.back().token == 2);
  CHECK(all.back().logprob == -kInf);
  CHECK(TopLogprobs(lp, 0).empty());
  CHECK(TopLogprobs(lp, -1).empty());
}

}  // namespace
}  // namespace xlserve
