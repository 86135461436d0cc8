#include "engine/sampling/distribution.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/sampling/logprobs.h"

namespace xlserve {
namespace {

// Step 1 of the header: the unnormalised weights, w[best] == 1.
std::vector<double> Weights(std::span<const float> logits, float max_logit, float temperature) {
  std::vector<double> w(logits.size(), 0.0);
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = logits[i];
    if (std::isnan(l)) continue;
    if (l == max_logit) {
      w[i] = 1.0;
      continue;
    }
    const float shifted = l - max_logit;
    const float scaled = shifted / temperature;
    w[i] = std::exp(static_cast<double>(scaled));
  }
  return w;
}

// Steps 2-4: zeroes the weights of tokens that top-k or top-p drop.
void ApplyTopKTopP(const SamplingParams& params, std::span<const float> logits,
                   std::vector<double>& w) {
  std::vector<int32_t> order;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] > 0.0) order.push_back(static_cast<int32_t>(i));
  }
  // w > 0 excludes NaN logits, so this comparison is a strict weak order.
  const auto ranks_before = [&logits](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  size_t keep = order.size();
  if (params.top_k > 0) keep = std::min(keep, static_cast<size_t>(params.top_k));
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), ranks_before);

  if (params.top_p < 1.0f) {
    double mass = 0.0;
    for (size_t j = 0; j < keep; ++j) mass += w[order[j]];
    const double threshold = static_cast<double>(params.top_p) * mass;
    double walked = 0.0;
    size_t j = 0;
    while (j < keep && walked < threshold) walked += w[order[j++]];
    keep = j;
  }

  std::vector<double> kept(w.size(), 0.0);
  for (size_t j = 0; j < keep; ++j) kept[order[j]] = w[order[j]];
  w.swap(kept);
}

}  // namespace

absl::Status DistributionFromLogits(const SamplingParams& params, std::span<const float> logits,
                                    std::span<float> probs) {
  if (logits.empty()) return absl::InvalidArgumentError("sampler: empty logits row");
  if (probs.size() != logits.size()) {
    return absl::InvalidArgumentError(absl::StrCat("sampler: probability row has ", probs.size(),
                                                   " entries, logits row has ", logits.size()));
  }
  const int32_t best = Argmax(logits);
  if (best < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampler: no usable logit in a row of ", logits.size(), " (all NaN or -inf)"));
  }
  if (params.temperature == 0.0f) {
    std::fill(probs.begin(), probs.end(), 0.0f);
    probs[best] = 1.0f;
    return absl::OkStatus();
  }

  std::vector<double> w = Weights(logits, logits[best], params.temperature);
  const bool ranks_needed =
      (params.top_k > 0 && static_cast<size_t>(params.top_k) < logits.size()) ||
      params.top_p < 1.0f;
  if (ranks_needed) ApplyTopKTopP(params, logits, w);
  if (params.min_p > 0.0f) {
    const double cut = params.min_p;
    for (double& x : w) {
      if (x < cut) x = 0.0;
    }
  }

  double total = 0.0;
  for (double x : w) total += x;
  for (size_t i = 0; i < w.size(); ++i) probs[i] = static_cast<float>(w[i] / total);
  return absl::OkStatus();
}

int32_t SampleFromDistribution(std::span<const float> probs, double u) {
  double total = 0.0;
  int32_t last = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] > 0.0f) {
      total += probs[i];
      last = static_cast<int32_t>(i);
    }
  }
  if (last < 0) return -1;
  const double target = u * total;
  double cumulative = 0.0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (!(probs[i] > 0.0f)) continue;
    cumulative += probs[i];
    if (target < cumulative) return static_cast<int32_t>(i);
  }
  return last;
}

}  // namespace xlserve
