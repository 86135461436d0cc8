// Sampler: one request's token sampler (CPU reference; the CUDA sampler must reproduce it).
//
// Per step, for one row of logits [vocab] and the request's token history:
//   1. penalties on a copy of the logits (penalties.h),
//   2. the processed distribution p(·): temperature, top-k, top-p, min-p (distribution.h),
//   3. greedy: the argmax of the penalised logits, no random draw; otherwise exactly one draw
//      u = NextUniform() and the inverse-CDF pick from p (distribution.h).
// The random stream is Philox-4x32-10 keyed by the seed (philox.h): draw n is a pure function
// of (seed, n). So the same seed, logits and call sequence give the same tokens on any machine,
// and a port reproduces the stream exactly. Calls that fail take no draw.
//
// Speculative decoding uses Probabilities() for the target distribution at each verified
// position and NextUniform() for its acceptance tests, drawing from the same stream.
//
// Not thread-safe; one Sampler per request, owned by whoever drives that request's steps.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/sampling/penalties.h"
#include "engine/sampling/philox.h"
#include "engine/sampling/sampling_params.h"

namespace xlserve {

class Sampler {
 public:
  // INVALID_ARGUMENT (from ValidateSamplingParams) if `params` are out of range.
  static absl::StatusOr<Sampler> Create(const SamplingParams& params);

  // p(·) after penalties, temperature, top-k, top-p and min-p for `logits` (one row [vocab],
  // raw model output) given `history`; zeros outside the kept set, one-hot when greedy.
  // `probs` is resized to vocab. Takes no draw. INVALID_ARGUMENT on a bad history id, an empty
  // row or a row with no usable logit (all NaN or -inf).
  absl::Status Probabilities(std::span<const float> logits, const TokenHistory& history,
                             std::vector<float>* probs) const;

  // The next token for `logits` given `history`. Errors as for Probabilities().
  absl::StatusOr<int32_t> Sample(std::span<const float> logits, const TokenHistory& history);

  // Next uniform double in [0, 1) of this request's stream.
  double NextUniform() { return stream_.Next(); }

  // Draws taken so far (the index of the next draw in the stream).
  uint64_t draws_taken() const { return stream_.index(); }
  // Counts `count` draws taken elsewhere from this stream's next indices: a backend that
  // sampled on the device took draw draws_taken() (Backend::SamplesOnDevice), and the stream
  // must then stand where Sample() would have left it.
  void SkipDraws(uint64_t count) { stream_.Skip(count); }
  const SamplingParams& params() const { return params_; }
  bool greedy() const { return params_.temperature == 0.0f; }
  // Greedy without penalties: the token is the argmax of the raw logits.
  bool plain_greedy() const {
    return greedy() && params_.repetition_penalty == 1.0f && params_.presence_penalty == 0.0f &&
           params_.frequency_penalty == 0.0f;
  }

 private:
  explicit Sampler(const SamplingParams& params) : params_(params), stream_(params.seed) {}

  // Copies `logits` into `penalised` and applies the penalties there.
  absl::Status Penalise(std::span<const float> logits, const TokenHistory& history,
                        std::vector<float>& penalised) const;

  SamplingParams params_;
  UniformStream stream_;
  // Reused across Sample() calls to avoid two vocab-sized allocations per token.
  std::vector<float> penalised_;
  std::vector<float> probs_;
};

}  // namespace xlserve
