#include "engine/speculative/draft_acceptance.h"

#include <string>

#include "engine/sampling/distribution.h"

namespace xlserve {

absl::StatusOr<DraftVerdict> JudgeSampledDraft(std::span<const float> p, std::span<const float> q,
                                               int32_t draft, double u, double u_resample) {
  if (p.size() != q.size() || p.empty()) {
    return absl::InvalidArgumentError("draft judgement needs p and q over the same vocabulary");
  }
  if (draft < 0 || static_cast<size_t>(draft) >= p.size()) {
    return absl::OutOfRangeError("draft token " + std::to_string(draft) + " outside the vocabulary");
  }
  DraftVerdict verdict;
  const double pd = p[draft];
  const double qd = q[draft];
  // q(d) > 0 always holds for a token drawn from q; a zero means the caller mixed rows up.
  if (qd <= 0.0) return absl::InternalError("draft token has zero probability under its draft distribution");
  if (u * qd < pd) {
    verdict.accepted = true;
    return verdict;
  }
  std::vector<float> residual(p.size());
  double mass = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    residual[i] = std::max(0.0f, p[i] - q[i]);
    mass += residual[i];
  }
  if (mass <= 0.0) {
    // p == q up to rounding, and the draft still lost: any token of p is exact then.
    residual.assign(p.begin(), p.end());
    mass = 1.0;
  }
  for (float& r : residual) r = static_cast<float>(r / mass);
  verdict.replacement = SampleFromDistribution(residual, u_resample);
  return verdict;
}

}  // namespace xlserve
