#include "engine/sampling/penalties.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace xlserve {
namespace {

absl::Status CheckIds(const char* list, std::span<const int32_t> ids, size_t vocab) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || static_cast<size_t>(ids[i]) >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token history: ", list, "[", i, "] = ",
                                                     ids[i], " is outside the vocabulary [0, ",
                                                     vocab, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTokenHistory(const TokenHistory& history, size_t vocab) {
  if (absl::Status s = CheckIds("prompt", history.prompt, vocab); !s.ok()) return s;
  return CheckIds("generated", history.generated, vocab);
}

absl::Status ApplyPenalties(const SamplingParams& params, const TokenHistory& history,
                            std::span<float> logits) {
  const size_t vocab = logits.size();
  if (absl::Status s = ValidateTokenHistory(history, vocab); !s.ok()) return s;

  const float r = params.repetition_penalty;
  if (r != 1.0f) {
    // Each seen token is penalised once, however often it occurs.
    std::vector<bool> seen(vocab, false);
    for (std::span<const int32_t> ids : {history.prompt, history.generated}) {
      for (int32_t t : ids) seen[t] = true;
    }
    for (size_t t = 0; t < vocab; ++t) {
      if (seen[t]) logits[t] = logits[t] > 0.0f ? logits[t] / r : logits[t] * r;
    }
  }

  if (params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f) {
    std::vector<int32_t> count(vocab, 0);
    for (int32_t t : history.generated) ++count[t];
    for (size_t t = 0; t < vocab; ++t) {
      if (count[t] == 0) continue;
      const float by_frequency = params.frequency_penalty * static_cast<float>(count[t]);
      logits[t] = logits[t] - by_frequency;
      logits[t] = logits[t] - params.presence_penalty;
    }
  }
  return absl::OkStatus();
}

}  // namespace xlserve
