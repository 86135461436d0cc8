// Helpers over one row of logits: argmax, log-softmax and the top-n log-probabilities that the
// API reports with each generated token.
//
// Non-finite logits: NaN counts as -inf everywhere here (the token can never be chosen and its
// log-probability is -inf). A row whose maximum is +inf is the limit of a softmax: the +inf
// tokens share the probability equally and every other token gets 0 (log-probability -inf).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace xlserve {

// Index of the largest logit, the lowest index among equal maxima; NaN entries are skipped.
// -1 when the row is empty or every entry is NaN or -inf (no token can be chosen).
int32_t Argmax(std::span<const float> logits);

// out[i] = log softmax(logits)[i], computed as logits[i] - (m + log Σ_j exp(logits[j] - m)) with
// m the maximum and the sum in double, ascending j. `out` must have the size of `logits` (they
// may be the same memory). INVALID_ARGUMENT on a size mismatch or when no token can be chosen
// (see Argmax); `out` is then left unchanged.
absl::Status LogSoftmax(std::span<const float> logits, std::span<float> out);

struct TokenLogprob {
  int32_t token;
  float logprob;
};

// The min(n, size) largest entries of `logprobs` (a log-softmax row), largest first, equal
// values by lower token id first; NaN entries rank as -inf and are reported as -inf.
// n <= 0 gives an empty list.
std::vector<TokenLogprob> TopLogprobs(std::span<const float> logprobs, int n);

}  // namespace xlserve
