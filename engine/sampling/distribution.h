// The processed next-token distribution p(·) and the draw from it: the sampler's exact algorithm.
//
// Input: one row of penalised logits l[0..V) (see penalties.h) and SamplingParams. NaN logits
// count as -inf. Let b = Argmax(l) (lowest id among equal maxima, logprobs.h) and L = l[b];
// if there is no b (every logit NaN or -inf) the row is rejected.
//
// Greedy (temperature == 0): p is one-hot at b.
//
// Otherwise, with T = temperature:
//  1. Weights, per token: w_i = 1 if l_i == L, else w_i = exp(double(float(float(l_i - L) / T))),
//     i.e. the subtraction and the division are float32 operations, exp in double. Subtracting
//     L before dividing keeps tiny T finite (the T -> 0 limit is greedy up to ties), and a +inf
//     maximum gives every +inf token weight 1 and every other token 0. w_b = 1 is the largest.
//  2. Rank: tokens ordered by l_i descending, equal logits by lower id first (NaN as -inf).
//     Tokens with w_i == 0 cannot be kept with positive probability and are left out below.
//  3. top-k (if 0 < top_k): keep the first top_k tokens in rank order (fewer if fewer have
//     w_i > 0); the others get w_i = 0.
//  4. top-p (if top_p < 1): S = Σ w over the kept tokens, summed in double in rank order; walk
//     the kept tokens in rank order with the running sum C of the w already walked (C = 0 at
//     the first) and keep a token iff C < double(top_p) * S. This is the smallest rank prefix
//     whose mass reaches top_p; the top-ranked token is always kept.
//  5. min-p (if 0 < min_p): drop a kept token iff w_i < double(min_p). Since w_b = 1 is the
//     largest weight, this is p_i < min_p * p_max; b is always kept. min-p is applied after
//     top-p, so top-p's mass is measured before min-p removes anything.
//  6. Normalise: Z = Σ w over kept tokens (double, ascending id); p_i = float(w_i / Z), 0 for
//     tokens not kept.
//
// Draw (SampleFromDistribution): given p and one uniform u in [0, 1): total = Σ p_i over
// p_i > 0 (double, ascending id); return the lowest id i with p_i > 0 and
// Σ_{j <= i, p_j > 0} p_j > u * total (double, ascending id); if rounding leaves no such id,
// the highest id with p_i > 0.
//
// Reproducing this elsewhere (the CUDA sampler): integer and float32 steps are bit-exact if
// done as written (IEEE round-to-nearest, no fused multiply-add); exp and the double sums may
// differ from this reference by a few ulps (other libm, other summation order), which changes
// a kept set or a drawn token only when a value lands within ~1e-15 relative of a threshold.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/sampling/sampling_params.h"

namespace xlserve {

// Writes p (steps 1-6 above) for the penalised `logits` into `probs`, which must have the same
// size. `params` must be valid (ValidateSamplingParams). INVALID_ARGUMENT on an empty row, a
// size mismatch, or a row with no usable logit; `probs` is then left unchanged.
absl::Status DistributionFromLogits(const SamplingParams& params, std::span<const float> logits,
                                    std::span<float> probs);

// The inverse-CDF draw above. Entries that are not > 0 (zero, negative, NaN) are never chosen;
// -1 when no entry is > 0. Also serves speculative decoding's resampling from an arbitrary
// distribution, e.g. norm(max(0, p - q)); `probs` need not sum to 1.
int32_t SampleFromDistribution(std::span<const float> probs, double u);

}  // namespace xlserve
