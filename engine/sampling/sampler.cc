#include "engine/sampling/sampler.h"

#include "absl/strings/str_cat.h"
#include "engine/sampling/distribution.h"
#include "engine/sampling/logprobs.h"

namespace xlserve {

absl::StatusOr<Sampler> Sampler::Create(const SamplingParams& params) {
  if (absl::Status s = ValidateSamplingParams(params); !s.ok()) return s;
  return Sampler(params);
}

absl::Status Sampler::Penalise(std::span<const float> logits, const TokenHistory& history,
                               std::vector<float>& penalised) const {
  if (logits.empty()) return absl::InvalidArgumentError("sampler: empty logits row");
  penalised.assign(logits.begin(), logits.end());
  return ApplyPenalties(params_, history, penalised);
}

absl::Status Sampler::Probabilities(std::span<const float> logits, const TokenHistory& history,
                                    std::vector<float>* probs) const {
  std::vector<float> penalised;
  if (absl::Status s = Penalise(logits, history, penalised); !s.ok()) return s;
  std::vector<float> result(logits.size());
  if (absl::Status s = DistributionFromLogits(params_, penalised, result); !s.ok()) return s;
  *probs = std::move(result);
  return absl::OkStatus();
}

absl::StatusOr<int32_t> Sampler::Sample(std::span<const float> logits,
                                        const TokenHistory& history) {
  if (absl::Status s = Penalise(logits, history, penalised_); !s.ok()) return s;
  if (greedy()) {
    const int32_t token = Argmax(penalised_);
    if (token < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sampler: no usable logit in a row of ", logits.size(), " (all NaN or -inf)"));
    }
    return token;
  }
  probs_.resize(logits.size());
  if (absl::Status s = DistributionFromLogits(params_, penalised_, probs_); !s.ok()) return s;
  // p has at least one positive entry here (the argmax), so the draw always yields a token.
  return SampleFromDistribution(probs_, NextUniform());
}

}  // namespace xlserve
