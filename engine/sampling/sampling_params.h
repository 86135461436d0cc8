// Per-request sampling settings and their validation.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace xlserve {

struct SamplingParams {
  // 0 selects greedy decoding (argmax, no random draw); > 0 divides the logits.
  float temperature = 0.0f;
  // Keep only the k highest-ranked tokens; 0 = off (so is any k >= vocab).
  int top_k = 0;
  // Keep the smallest set of highest-ranked tokens whose probability mass reaches top_p; 1 = off.
  float top_p = 1.0f;
  // Drop tokens whose probability is below min_p times the largest probability; 0 = off.
  float min_p = 0.0f;
  // Seen tokens (prompt and output): positive logits divided by it, negative ones multiplied;
  // 1 = off. > 1 discourages repetition.
  float repetition_penalty = 1.0f;
  // Subtracted once from the logit of every token that occurs in the output so far; 0 = off.
  float presence_penalty = 0.0f;
  // Subtracted from a token's logit once per occurrence in the output so far; 0 = off.
  float frequency_penalty = 0.0f;
  // Selects the random stream (see philox.h); the same seed and call sequence give the same tokens.
  uint64_t seed = 0;
};

// OK, or INVALID_ARGUMENT naming the first bad field and its value. Accepted ranges:
// temperature finite >= 0; top_k >= 0; top_p in (0, 1]; min_p in [0, 1];
// repetition_penalty finite > 0; presence_penalty and frequency_penalty finite (any sign; the
// OpenAI-compatible gateway may narrow them to its documented [-2, 2]).
absl::Status ValidateSamplingParams(const SamplingParams& params);

}  // namespace xlserve
