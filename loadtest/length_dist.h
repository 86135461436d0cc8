// LengthDist: how many tokens a load-test request's prompt or output has, as a fixed number or
// drawn from a distribution ("uniform:a:b" or "normal:mu:sigma").
#pragma once

#include <random>
#include <string>

#include "absl/status/statusor.h"

namespace xlserve::loadtest {

struct LengthDist {
  enum class Kind { kFixed, kUniform, kNormal };
  Kind kind = Kind::kFixed;
  double a = 1;  // fixed value, uniform low bound (inclusive) or normal mean
  double b = 1;  // uniform high bound (inclusive) or normal standard deviation

  static LengthDist Fixed(int n) { return {Kind::kFixed, double(n), double(n)}; }

  // Draws one length, rounded and clamped to at least 1 (a request needs a prompt token and
  // room for one output token). `rng` is the caller's, so a seeded workload is reproducible.
  int Sample(std::mt19937_64& rng) const;
  std::string ToString() const;
};

// Parses "uniform:a:b" (1 <= a <= b) or "normal:mu:sigma" (mu >= 1, sigma >= 0). The error
// names `flag` and the text.
absl::StatusOr<LengthDist> ParseLengthDist(const std::string& flag, const std::string& text);

}  // namespace xlserve::loadtest
