#include "engine/sampling/distribution.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "engine/sampling/philox.h"

namespace xlserve {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams WithTemperature(float t) {
  SamplingParams p;
  p.temperature = t;
  return p;
}

std::vector<float> Distribution(const SamplingParams& params, const std::vector<float>& logits) {
  std::vector<float> probs(logits.size());
  const absl::Status s = DistributionFromLogits(params, logits, probs);
  INFO(s.message());
  REQUIRE(s.ok());
  return probs;
}

// softmax(logits / t) in double, the reference the filters are checked against.
std::vector<double> Softmax(const std::vector<float>& logits, double t) {
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> q(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) q[i] = std::exp((logits[i] - m) / t);
  const double z = std::accumulate(q.begin(), q.end(), 0.0);
  for (double& x : q) x /= z;
  return q;
}

// A vocabulary of 300 logits in [-4, 4) on a grid of 1/8, so that many are tied.
std::vector<float> GridLogits(uint64_t seed) {
  std::vector<float> logits(300);
  for (size_t i = 0; i < logits.size(); ++i) {
    logits[i] = std::floor(PhiloxUniform(seed, i) * 64.0f) / 8.0f - 4.0f;
  }
  return logits;
}

// Token ids by logit descending, equal logits by lower id (the documented rank order).
std::vector<int> RankOrder(const std::vector<float>& logits) {
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return logits[a] > logits[b]; });
  return order;
}

TEST_CASE("greedy gives a one-hot distribution at the argmax") {
  const std::vector<float> p = Distribution(SamplingParams{}, {0.5f, 2.0f, -1.0f, 2.0f});
  CHECK(p == std::vector<float>{0.0f, 1.0f, 0.0f, 0.0f});
}

TEST_CASE("without filters p is softmax(logits / temperature)") {
  const std::vector<float> logits = {1.0f, -0.5f, 3.25f, 0.0f, 2.0f, -7.0f};
  for (float t : {1.0f, 0.5f, 2.5f}) {
    const std::vector<float> p = Distribution(WithTemperature(t), logits);
    const std::vector<double> q = Softmax(logits, t);
    for (size_t i = 0; i < logits.size(); ++i) CHECK(p[i] == Approx(q[i]).epsilon(1e-6));
  }
}

TEST_CASE("temperature towards 0 approaches greedy") {
  const std::vector<float> logits = {1.0f, 2.9f, 3.0f, 2.0f};
  float previous = 0.0f;
  for (float t : {4.0f, 1.0f, 0.3f, 0.1f, 0.03f}) {
    const float p_max = Distribution(WithTemperature(t), logits)[2];
    CHECK(p_max > previous);
    previous = p_max;
  }
  // exp(-0.1 / 1e-4) underflows in double: exactly one-hot.
  CHECK(Distribution(WithTemperature(1e-4f), logits) == std::vector<float>{0, 0, 1, 0});
  // Even a temperature that would overflow logits / T splits only among tied maxima.
  CHECK(Distribution(WithTemperature(1e-30f), {1.0f, 3.0f, 3.0f, 2.0f}) ==
        std::vector<float>{0.0f, 0.5f, 0.5f, 0.0f});
}

TEST_CASE("top-k keeps exactly the k highest-ranked tokens, renormalised") {
  const std::vector<float> logits = GridLogits(11);
  const std::vector<double> q = Softmax(logits, 1.0);
  const std::vector<int> order = RankOrder(logits);
  for (int k : {1, 2, 7, 40, 299}) {
    SamplingParams params = WithTemperature(1.0f);
    params.top_k = k;
    const std::vector<float> p = Distribution(params, logits);
    double kept_mass = 0.0;
    for (int j = 0; j < k; ++j) kept_mass += q[order[j]];
    for (int j = 0; j < static_cast<int>(order.size()); ++j) {
      const int id = order[j];
      if (j < k) {
        CHECK(p[id] == Approx(q[id] / kept_mass).epsilon(1e-5));
      } else {
        CHECK(p[id] == 0.0f);
      }
    }
    CHECK(std::count_if(p.begin(), p.end(), [](float x) { return x > 0; }) == k);
  }
}

TEST_CASE("top-p keeps the smallest highest-probability set whose mass reaches top_p") {
  const std::vector<float> logits = GridLogits(12);
  for (float t : {1.0f, 0.6f}) {
    const std::vector<double> q = Softmax(logits, t);
    for (float top_p : {0.05f, 0.3f, 0.5f, 0.9f, 0.99f}) {
      SamplingParams params = WithTemperature(t);
      params.top_p = top_p;
      const std::vector<float> p = Distribution(params, logits);
      double kept_mass = 0.0, smallest_kept = 1.0, largest_dropped = 0.0;
      int last_kept_rank = -1, first_dropped_rank = -1;
      const std::vector<int> order = RankOrder(logits);
      for (int j = 0; j < static_cast<int>(order.size()); ++j) {
        const int id = order[j];
        if (p[id] > 0.0f) {
          kept_mass += q[id];
          smallest_kept = std::min(smallest_kept, q[id]);
          last_kept_rank = j;
        } else {
          largest_dropped = std::max(largest_dropped, q[id]);
          if (first_dropped_rank < 0) first_dropped_rank = j;
        }
      }
      if (first_dropped_rank < 0) first_dropped_rank = static_cast<int>(order.size());
      INFO("t = " << t << ", top_p = " << top_p);
      CHECK(kept_mass >= top_p - 1e-6);                  // reaches top_p
      CHECK(kept_mass - smallest_kept < top_p + 1e-6);   // and is the smallest such set
      CHECK(smallest_kept >= largest_dropped);           // of the most probable tokens
      CHECK(last_kept_rank < first_dropped_rank);        // ties: lower ids first (a rank prefix)
      for (size_t i = 0; i < p.size(); ++i) {
        if (p[i] > 0.0f) CHECK(p[i] == Approx(q[i] / kept_mass).epsilon(1e-5));
      }
    }
  }
}

TEST_CASE("top-p stops as soon as the mass reaches top_p exactly") {
  // Four tied maxima have weight exactly 1 each: two of them reach top_p = 0.5 exactly, so
  // the third is not kept; the lower ids win the tie.
  SamplingParams params = WithTemperature(1.0f);
  params.top_p = 0.5f;
  CHECK(Distribution(params, {3.0f, 3.0f, 3.0f, 3.0f}) == std::vector<float>{0.5f, 0.5f, 0, 0});
  params.top_p = 0.51f;
  CHECK(Distribution(params, {3.0f, 3.0f, 3.0f, 3.0f}) ==
        std::vector<float>{1 / 3.0f, 1 / 3.0f, 1 / 3.0f, 0});
}

TEST_CASE("top-p after top-k measures mass within the top-k set") {
  // softmax over the top 2 = {0.731, 0.269}: top_p 0.7 keeps only token 0 although over the
  // full vocabulary token 0 alone has far less than 0.7.
  const std::vector<float> logits = {1.0f, 0.0f, -0.1f, -0.1f, -0.2f, -0.3f};
  SamplingParams params = WithTemperature(1.0f);
  params.top_k = 2;
  params.top_p = 0.7f;
  CHECK(Distribution(params, logits) == std::vector<float>{1, 0, 0, 0, 0, 0});
  params.top_p = 0.75f;
  const std::vector<float> p = Distribution(params, logits);
  CHECK(p[0] == Approx(1.0 / (1.0 + std::exp(-1.0))));
  CHECK(p[1] == Approx(std::exp(-1.0) / (1.0 + std::exp(-1.0))));
}

TEST_CASE("min-p drops tokens below min_p times the largest probability") {
  // Ratios to the top token: e^0, e^-1, e^-2.25 = 0.105, e^-2.35 = 0.095, e^-5.
  const std::vector<float> logits = {0.0f, -1.0f, -2.25f, -2.35f, -5.0f};
  SamplingParams params = WithTemperature(1.0f);
  params.min_p = 0.1f;
  std::vector<float> p = Distribution(params, logits);
  const double z = 1.0 + std::exp(-1.0) + std::exp(-2.25);
  CHECK(p[0] == Approx(1.0 / z));
  CHECK(p[1] == Approx(std::exp(-1.0) / z));
  CHECK(p[2] == Approx(std::exp(-2.25) / z));
  CHECK(p[3] == 0.0f);
  CHECK(p[4] == 0.0f);

  // The cut applies to the tempered distribution: at T = 0.5 the ratios are squared.
  params.temperature = 0.5f;
  p = Distribution(params, logits);
  CHECK(p[1] > 0.0f);
  CHECK(p[2] == 0.0f);

  // min_p = 1 keeps only the maxima.
  params.min_p = 1.0f;
  CHECK(Distribution(params, {2.0f, 1.0f, 2.0f}) == std::vector<float>{0.5f, 0.0f, 0.5f});
}

TEST_CASE("non-finite logits: NaN and -inf are never kept, +inf tokens share the mass") {
  std::vector<float> p = Distribution(WithTemperature(1.0f), {0.0f, kNaN, 0.0f, -kInf});
  CHECK(p == std::vector<float>{0.5f, 0.0f, 0.5f, 0.0f});

  SamplingParams params = WithTemperature(0.7f);
  params.top_p = 0.9f;
  p = Distribution(params, {kInf, 3.0f, kInf, kNaN});
  CHECK(p == std::vector<float>{0.5f, 0.0f, 0.5f, 0.0f});

  // Extreme but finite logits do not overflow into NaN.
  p = Distribution(WithTemperature(1.0f), {3e38f, -3e38f, 3e38f});
  CHECK(p == std::vector<float>{0.5f, 0.0f, 0.5f});

  std::vector<float> untouched = {9.0f, 9.0f};
  CHECK(DistributionFromLogits(WithTemperature(1.0f), std::vector<float>{kNaN, -kInf}, untouched)
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(untouched == std::vector<float>{9.0f, 9.0f});
  CHECK(!DistributionFromLogits(WithTemperature(1.0f), {}, {}).ok());
  CHECK(!DistributionFromLogits(WithTemperature(1.0f), std::vector<float>{1.0f}, untouched).ok());
}

TEST_CASE("SampleFromDistribution inverts the CDF over ascending ids") {
  const std::vector<float> probs = {0.0f, 0.25f, 0.0f, 0.5f, 0.25f};
  CHECK(SampleFromDistribution(probs, 0.0) == 1);
  CHECK(SampleFromDistribution(probs, 0.2499) == 1);
  CHECK(SampleFromDistribution(probs, 0.25) == 3);
  CHECK(SampleFromDistribution(probs, 0.7499) == 3);
  CHECK(SampleFromDistribution(probs, 0.75) == 4);
  CHECK(SampleFromDistribution(probs, std::nextafter(1.0, 0.0)) == 4);

  // Unnormalised input is scaled by its total.
  CHECK(SampleFromDistribution(std::vector<float>{2.0f, 6.0f}, 0.24) == 0);
  CHECK(SampleFromDistribution(std::vector<float>{2.0f, 6.0f}, 0.26) == 1);
  // Entries that are not positive are never chosen.
  CHECK(SampleFromDistribution(std::vector<float>{-1.0f, kNaN, 0.5f, 0.0f}, 0.0) == 2);
  CHECK(SampleFromDistribution(std::vector<float>{-1.0f, kNaN, 0.5f, 0.0f}, 0.99) == 2);
  CHECK(SampleFromDistribution(std::vector<float>{0.0f, 0.0f}, 0.5) == -1);
  CHECK(SampleFromDistribution(std::vector<float>{}, 0.5) == -1);
}

}  // namespace
}  // namespace xlserve
