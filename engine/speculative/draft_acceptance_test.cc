#include "engine/speculative/draft_acceptance.h"

#include <catch2/catch.hpp>
#include <vector>

#include "engine/sampling/distribution.h"
#include "engine/sampling/philox.h"

namespace xlserve {
namespace {

// Runs draft-then-judge `trials` times and returns how often each token came out.
std::vector<int> EmittedCounts(const std::vector<float>& p, const std::vector<float>& q, int trials,
                               bool judge) {
  UniformStream stream(2024);
  std::vector<int> counts(p.size(), 0);
  for (int t = 0; t < trials; ++t) {
    const int32_t draft = SampleFromDistribution(q, stream.Next());
    const double u = stream.Next(), u2 = stream.Next();
    int32_t token = draft;
    if (judge) {
      absl::StatusOr<DraftVerdict> v = JudgeSampledDraft(p, q, draft, u, u2);
      REQUIRE(v.ok());
      if (!v->accepted) token = v->replacement;
    }
    ++counts[token];
  }
  return counts;
}

double ChiSquare(const std::vector<int>& counts, const std::vector<float>& p, int trials) {
  double chi2 = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double expected = p[i] * trials;
    if (expected > 0) chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

// Critical value of chi-square with 5 degrees of freedom at significance 1e-4. The draws
// come from a fixed Philox stream, so the test is deterministic; the threshold only says how
// unlikely a correct implementation would be to land above it.
constexpr double kChi2Critical5 = 25.74;

TEST_CASE("speculative sampling emits tokens distributed as the target p") {
  const std::vector<float> p = {0.05f, 0.30f, 0.10f, 0.25f, 0.20f, 0.10f};
  const std::vector<float> q = {0.30f, 0.05f, 0.20f, 0.25f, 0.00f, 0.20f};  // q misses token 4
  constexpr int kTrials = 200000;
  const std::vector<int> judged = EmittedCounts(p, q, kTrials, true);
  CHECK(ChiSquare(judged, p, kTrials) < kChi2Critical5);
  // The same statistic tells the unjudged drafts (distributed as q) apart from p at once,
  // so the test has the power to catch a wrong acceptance rule.
  const std::vector<int> raw = EmittedCounts(p, q, kTrials, false);
  CHECK(ChiSquare(raw, p, kTrials) > 1000 * kChi2Critical5);
}

TEST_CASE("identical draft and target distributions always accept") {
  const std::vector<float> p = {0.2f, 0.3f, 0.5f};
  for (double u : {0.0, 0.5, 0.999999}) {
    absl::StatusOr<DraftVerdict> v = JudgeSampledDraft(p, p, 2, u, 0.3);
    REQUIRE(v.ok());
    CHECK(v->accepted);
  }
}

TEST_CASE("a draft the target rules out is always replaced from the residual") {
  const std::vector<float> p = {0.0f, 1.0f, 0.0f};
  const std::vector<float> q = {0.5f, 0.0f, 0.5f};
  absl::StatusOr<DraftVerdict> v = JudgeSampledDraft(p, q, 0, 0.0, 0.7);
  REQUIRE(v.ok());
  CHECK_FALSE(v->accepted);
  CHECK(v->replacement == 1);
}

TEST_CASE("bad judge inputs are errors") {
  const std::vector<float> p = {0.5f, 0.5f};
  const std::vector<float> q3 = {0.2f, 0.3f, 0.5f};
  CHECK_FALSE(JudgeSampledDraft(p, q3, 0, 0.1, 0.1).ok());
  CHECK(JudgeSampledDraft(p, p, 2, 0.1, 0.1).status().code() == absl::StatusCode::kOutOfRange);
  const std::vector<float> q0 = {1.0f, 0.0f};
  CHECK_FALSE(JudgeSampledDraft(p, q0, 1, 0.1, 0.1).ok());
}

}  // namespace
}  // namespace xlserve
