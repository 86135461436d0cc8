// WarmUp: runs every step shape a server will use once before it serves, so that a backend's
// one-time work — timing GEMM algorithms per shape, capturing CUDA graphs per batch bucket,
// growing scratch buffers to their largest size — happens at start-up, not inside a live step
// where it would stall every running stream.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "engine/backend.h"
#include "engine/speculative/step_costs.h"

namespace xlserve {

struct WarmUpOptions {
  int max_batch = 1;        // sequences decoding at once; slots [0, max_batch) must be free
  int max_step_tokens = 1;  // rows of the largest forward pass (the scheduler's step budget)
  int max_draft = 0;        // drafts per speculative step; 0: no speculation
  // Seconds on some steady clock, for the passes warm-up times; empty: std::chrono::steady_clock
  // (tests pass a simulated one).
  std::function<double()> clock;
};

// On backends that do not want it (Backend::WantsWarmUp) it only measures `costs` (the bucket
// steps below), and only when speculation can run: `auto` needs them. Otherwise runs, on
// token 0 in slots [0, max_batch): the largest mixed pass and the largest verify pass first
// (so that later shapes find their buffers in place), that verify again with a decode step after
// it (its commit applied on its own), one prompt chunk of each size of a ladder
// up to max_step_tokens (mixed passes borrow the next size's choices), each of these again
// with every candidate of the choices it left open (Backend::OpenChoices) until the fastest
// pass settles them, a sampled step of max_batch sequences on backends that sample on
// the device, then for each power-of-two batch bucket
// up to max_batch a plain greedy step and, with drafts, a verify of each length 1..1+max_draft
// with and without a recorded commit: each once (its buffers), then, every bucket's buffers in
// place, each three times (eager, captured, replayed). Shape
// tuning is on meanwhile and off afterwards (Backend::SetShapeTuning). Resets the slots.
// `progress` (may be empty) sees one line per stage.
// `costs` (may be null) gets the time of each bucket's replayed plain and verify steps.
absl::Status WarmUp(Backend* backend, const WarmUpOptions& options,
                    const std::function<void(const std::string&)>& progress, StepCosts* costs = nullptr);

}  // namespace xlserve
