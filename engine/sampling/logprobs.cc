#include "engine/sampling/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace xlserve {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

float NanAsNegInf(float x) { return std::isnan(x) ? kNegInf : x; }

}  // namespace

int32_t Argmax(std::span<const float> logits) {
  int32_t best = -1;
  float best_value = kNegInf;
  for (size_t i = 0; i < logits.size(); ++i) {
    // Strict comparison keeps the lowest index among ties and never selects NaN or -inf.
    if (logits[i] > best_value) {
      best_value = logits[i];
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

absl::Status LogSoftmax(std::span<const float> logits, std::span<float> out) {
  if (out.size() != logits.size()) {
    return absl::InvalidArgumentError(absl::StrCat("LogSoftmax: output has ", out.size(),
                                                   " entries, logits row has ", logits.size()));
  }
  const int32_t best = Argmax(logits);
  if (best < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LogSoftmax: no usable logit in a row of ", logits.size(), " (all NaN or -inf)"));
  }
  const float max_logit = logits[best];
  if (std::isinf(max_logit)) {
    const auto ties = std::count(logits.begin(), logits.end(), max_logit);
    const float tied_logprob = static_cast<float>(-std::log(static_cast<double>(ties)));
    for (size_t i = 0; i < logits.size(); ++i) {
      out[i] = logits[i] == max_logit ? tied_logprob : kNegInf;
    }
    return absl::OkStatus();
  }
  double sum = 0.0;
  for (float l : logits) {
    if (!std::isnan(l)) sum += std::exp(static_cast<double>(l) - max_logit);
  }
  const double log_normaliser = max_logit + std::log(sum);
  for (size_t i = 0; i < logits.size(); ++i) {
    out[i] = static_cast<float>(static_cast<double>(NanAsNegInf(logits[i])) - log_normaliser);
  }
  return absl::OkStatus();
}

std::vector<TokenLogprob> TopLogprobs(std::span<const float> logprobs, int n) {
  const size_t count = std::min(static_cast<size_t>(std::max(n, 0)), logprobs.size());
  std::vector<TokenLogprob> all(logprobs.size());
  for (size_t i = 0; i < logprobs.size(); ++i) {
    all[i] = {static_cast<int32_t>(i), NanAsNegInf(logprobs[i])};
  }
  std::partial_sort(all.begin(), all.begin() + count, all.end(),
                    [](const TokenLogprob& a, const TokenLogprob& b) {
                      return a.logprob != b.logprob ? a.logprob > b.logprob : a.token < b.token;
                    });
  all.resize(count);
  return all;
}

}  // namespace xlserve
