#include "engine/speculative/draft_length_policy.h"

#include <catch2/catch.hpp>

namespace xlserve {
namespace {

TEST_CASE("expected tokens per step follow the geometric series") {
  CHECK(DraftLengthPolicy::ExpectedTokens(0.5, 0) == 1.0);
  CHECK(DraftLengthPolicy::ExpectedTokens(0.5, 3) == Approx(1.875));
  CHECK(DraftLengthPolicy::ExpectedTokens(1.0, 3) == Approx(4.0));
  CHECK(DraftLengthPolicy::ExpectedTokens(0.0, 3) == Approx(1.0));
}

TEST_CASE("flat verify cost and good acceptance draft the most") {
  DraftLengthPolicy policy(3);
  // Every draft kept, and every length costs 10 ms a step (a bandwidth-bound GPU step).
  for (int k = 0; k <= 3; ++k) {
    for (int i = 0; i < 50; ++i) policy.Record(k, k, 0.010);
  }
  CHECK(policy.acceptance_rate() > 0.9);
  CHECK(policy.Next() == 3);
}

TEST_CASE("speculation that never hits is switched off") {
  DraftLengthPolicy policy(3);
  for (int k = 0; k <= 3; ++k) {
    for (int i = 0; i < 50; ++i) policy.Record(k, 0, 0.010 * (1 + 0.3 * k));
  }
  CHECK(policy.acceptance_rate() < 0.05);
  CHECK(policy.Next() == 0);
}

TEST_CASE("verify cost growing with length shortens the draft") {
  DraftLengthPolicy policy(4);
  // Half the drafts kept; each extra verified token adds 60% of a plain step (compute-bound).
  for (int k = 0; k <= 4; ++k) {
    for (int i = 0; i < 60; ++i) {
      policy.Record(k, k == 0 ? 0 : (i % 2 == 0 ? 1 : 0), 0.010 * (1 + 0.6 * k));
    }
  }
  // E(k)/T(k) with α≈1/3 … the best is no drafting or a short draft, never the longest.
  CHECK(policy.Next() < 2);
}

TEST_CASE("untried lengths are explored before being ruled out") {
  DraftLengthPolicy policy(2);
  CHECK(policy.Next() == 2);  // nothing measured: optimistic
  for (int i = 0; i < 30; ++i) policy.Record(2, 0, 0.030);
  // Acceptance fell and k = 0 is untried: guessed at a third of the cost of verifying 3 tokens.
  CHECK(policy.Next() == 0);
  // Once every length is measured at the same cost (a bandwidth-bound GPU step), the
  // occasional hit makes the longest draft pay again.
  for (int k = 0; k <= 1; ++k) {
    for (int i = 0; i < 30; ++i) policy.Record(k, 0, 0.030);
  }
  for (int i = 0; i < 5; ++i) policy.Record(2, 2, 0.030);
  CHECK(policy.Next() == 2);
}

}  // namespace
}  // namespace xlserve

namespace xlserve {
namespace {

TEST_CASE("a fixed cost model makes choices independent of timings") {
  DraftLengthPolicy flat(3, [](int) { return 1.0; });
  DraftLengthPolicy linear(3, [](int k) { return 1.0 + k; });
  for (int i = 0; i < 40; ++i) {
    flat.Record(3, 2, 123.0 * i);  // wild timings are ignored
    linear.Record(3, 2, 0.001);
  }
  CHECK(flat.Next() == 3);
  CHECK(linear.Next() == 0);  // E(k) < 1 + k for any acceptance below 1
}

}  // namespace
}  // namespace xlserve
