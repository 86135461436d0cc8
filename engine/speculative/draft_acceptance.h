// Deciding which drafted tokens a verify pass keeps (DESIGN §4, step 2).
//
// Greedy: a draft is kept while it equals the target model's argmax at its position.
// Sampled (speculative sampling): a draft d drawn from the draft distribution q is kept with
// probability min(1, p(d) / q(d)); at the first rejection the token is drawn instead from
// norm(max(0, p - q)). The kept tokens then follow p exactly, so speculation is lossless.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace xlserve {

// Outcome for one draft position.
struct DraftVerdict {
  bool accepted = false;
  int32_t replacement = -1;  // when rejected: the token to emit instead (drawn from the residual)
};

// Speculative-sampling decision for draft `draft` given target p and draft q (both
// probability vectors over the vocabulary) and a uniform draw `u` in [0, 1); a second draw
// `u_resample` picks the residual token on rejection. Deterministic given the draws.
absl::StatusOr<DraftVerdict> JudgeSampledDraft(std::span<const float> p, std::span<const float> q,
                                               int32_t draft, double u, double u_resample);

}  // namespace xlserve
