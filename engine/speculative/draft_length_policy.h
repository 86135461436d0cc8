// DraftLengthPolicy: how many tokens to draft next step, from measured acceptance and cost.
//
// With per-draft acceptance rate α, a step drafting k tokens yields on average
// E(k) = 1 + α + … + α^k tokens (the accepted prefix plus the bonus token) and costs T(k),
// the measured time of a verify pass of 1 + k tokens. The policy picks the k in [0, max]
// that maximises E(k) / T(k): k = 0 when speculation does not pay. Untried lengths get an
// optimistic cost guess, so each is measured before it is ruled out.
#pragma once

#include <functional>
#include <vector>

namespace xlserve {

class DraftLengthPolicy {
 public:
  explicit DraftLengthPolicy(int max_draft);
  // Uses cost(k) (relative time of a verify pass drafting k tokens) instead of timings, so the
  // choices are a function of the acceptance history alone (reproducible runs).
  DraftLengthPolicy(int max_draft, std::function<double(int)> cost);

  int Next() const;
  // Records a step that drafted `drafted` tokens, kept `accepted` of them and took `seconds`.
  void Record(int drafted, int accepted, double seconds);

  double acceptance_rate() const { return alpha_; }
  static double ExpectedTokens(double alpha, int k);

 private:
  double EstimatedSeconds(int k) const;

  int max_draft_;
  double alpha_ = 0.5;  // prior: one draft in two kept
  std::vector<double> seconds_;  // EMA of step time by draft length; < 0 when untried
  std::function<double(int)> cost_;  // when set, replaces seconds_
};

}  // namespace xlserve
