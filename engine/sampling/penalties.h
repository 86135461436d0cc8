// Repetition, presence and frequency penalties on one row of logits (vLLM / OpenAI semantics).
//
// For every token id t, in float32 arithmetic, in this order:
//   1. if t occurs in prompt or generated and repetition_penalty r != 1:
//        logit = logit > 0 ? logit / r : logit * r
//   2. with c = number of occurrences of t in generated (the output so far, not the prompt),
//      if c > 0:  logit = logit - frequency_penalty * float(c);  logit = logit - presence_penalty
// Each step is a separately rounded IEEE operation (no fused multiply-add: a CUDA port uses
// __fmul_rn / __fsub_rn / __fdiv_rn), so ports reproduce the penalised logits bit for bit.
// NaN logits stay NaN; the sampler treats them as -inf.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/sampling/sampling_params.h"

namespace xlserve {

// The tokens a request has seen so far. Views only: the caller keeps the ids alive for the call.
struct TokenHistory {
  std::span<const int32_t> prompt;
  std::span<const int32_t> generated;
};

// OK, or INVALID_ARGUMENT naming the list and position of the first id outside [0, vocab).
absl::Status ValidateTokenHistory(const TokenHistory& history, size_t vocab);

// Penalises `logits` (one row, [vocab]) in place. The errors of ValidateTokenHistory (with
// vocab = logits.size()); `logits` is then left unchanged.
absl::Status ApplyPenalties(const SamplingParams& params, const TokenHistory& history,
                            std::span<float> logits);

}  // namespace xlserve
