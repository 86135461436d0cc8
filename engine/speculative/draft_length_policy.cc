#include "engine/speculative/draft_length_policy.h"

#include <algorithm>

namespace xlserve {
namespace {

// Smoothing of the running estimates: recent steps dominate after ~10 steps, so the policy
// follows a request whose text turns from boilerplate (easy to draft) to prose (hard).
constexpr double kEmaWeight = 0.1;

}  // namespace

DraftLengthPolicy::DraftLengthPolicy(int max_draft)
    : max_draft_(std::max(0, max_draft)), seconds_(max_draft_ + 1, -1.0) {}

double DraftLengthPolicy::ExpectedTokens(double alpha, int k) {
  double total = 0, term = 1;
  for (int j = 0; j <= k; ++j) {
    total += term;
    term *= alpha;
  }
  return total;
}

DraftLengthPolicy::DraftLengthPolicy(int max_draft, std::function<double(int)> cost)
    : DraftLengthPolicy(max_draft) {
  cost_ = std::move(cost);
}

double DraftLengthPolicy::EstimatedSeconds(int k) const {
  if (cost_) return cost_(k);
  if (seconds_[k] >= 0) return seconds_[k];
  // Optimistic guess from the tried lengths: a shorter verify costs at most proportionally
  // less, a longer one at least as much; optimism makes every length get tried once.
  double best = -1;
  for (int j = 0; j <= max_draft_; ++j) {
    if (seconds_[j] < 0) continue;
    const double guess = k < j ? seconds_[j] * (1.0 + k) / (1.0 + j) : seconds_[j];
    if (best < 0 || guess < best) best = guess;
  }
  return best < 0 ? 1.0 : best;
}

int DraftLengthPolicy::Next() const {
  int best = 0;
  double best_rate = -1;
  for (int k = 0; k <= max_draft_; ++k) {
    const double rate = ExpectedTokens(alpha_, k) / std::max(EstimatedSeconds(k), 1e-12);
    if (rate > best_rate) {
      best_rate = rate;
      best = k;
    }
  }
  return best;
}

void DraftLengthPolicy::Record(int drafted, int accepted, double seconds) {
  if (drafted < 0 || drafted > max_draft_) return;
  if (drafted > 0) {
    // Per-draft acceptance under the geometric model: accepted / (attempted positions).
    const int attempted = std::min(drafted, accepted + 1);
    const double observed = static_cast<double>(accepted) / attempted;
    alpha_ = (1 - kEmaWeight) * alpha_ + kEmaWeight * observed;
  }
  double& s = seconds_[drafted];
  s = s < 0 ? seconds : (1 - kEmaWeight) * s + kEmaWeight * seconds;
}

}  // namespace xlserve
