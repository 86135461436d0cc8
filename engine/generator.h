// Generator: runs one sequence from prompt to finish on a backend — prefill, then decode
// steps through a BatchDecoder of one, plain (one token a step) or self-speculative
// (DESIGN §4: verify the last token plus k drafts from the MTP heads in one pass, keep the
// accepted prefix, commit the state once). The CLI's `generate` uses it; batched serving
// drives BatchDecoder directly.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/speculative/acceptance_counts.h"
#include "engine/state_cache.h"

namespace xlserve {

enum class SpeculationMode {
  kOff,   // one token per step
  kOn,    // always draft num_draft tokens (fewer only near max_new_tokens)
  kAuto,  // draft 0..num_draft tokens, chosen per step from measured acceptance and cost
};

// How flags and JSON settings spell each mode (`--speculation`).
inline constexpr std::pair<SpeculationMode, std::string_view> kSpeculationModeNames[] = {
    {SpeculationMode::kOff, "off"}, {SpeculationMode::kOn, "on"}, {SpeculationMode::kAuto, "auto"}};

struct GenerationRequest {
  std::vector<int32_t> prompt_ids;  // at least one id, each < vocab_size
  int max_new_tokens = 32;          // >= 0; 0 only prefills (the prompt's logits still come out)
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
  // Falls back to kOff when the model has no MTP heads or the backend cannot verify.
  SpeculationMode speculation = SpeculationMode::kOff;
  int num_draft = 3;  // at most the model's extra heads
  // Token callbacks receive each token's logits row (logprobs). Without it, requests that do
  // not speculate may get an empty span: the backend then returns only each row's argmax
  // (plain greedy) or the token it sampled on the device (Backend::SamplesOnDevice).
  bool token_logits = false;
};

enum class FinishReason { kLength, kStop };

struct GenerationResult {
  std::vector<int32_t> tokens;            // generated ids, the stop token included
  std::vector<float> prompt_last_logits;  // [vocab]: the logits after the last prompt token
  FinishReason finish_reason = FinishReason::kLength;
  int steps = 0;            // decode passes after prefill
  int drafted_tokens = 0;   // drafts sent to verification
  int accepted_drafts = 0;  // drafts kept
  bool speculative = false; // whether speculation actually ran
  // Speculation was switched off part-way (it did not pay at the batch's size): the MTP heads'
  // states stopped following the tokens.
  bool heads_dropped = false;
  // Each complete verify's draft length and drafts kept (a verify cut short by the sequence's
  // end is left out: it says nothing of what the rest would have kept).
  AcceptanceCounts acceptance;
};

struct GeneratorOptions {
  // Prompt tokens per backend call during prefill; bounds activation memory for long prompts.
  int prefill_chunk_tokens = 512;
};

class Generator {
 public:
  // `backend` and `cache` must outlive the generator; it acquires one slot per Generate()
  // call and releases it before returning.
  Generator(Backend* backend, StateCache* cache, const GeneratorOptions& options = {});

  // Runs `request` to completion. `on_token`, if set, sees each generated id as it is made.
  absl::StatusOr<GenerationResult> Generate(const GenerationRequest& request,
                                            const std::function<void(int32_t)>& on_token = {});

 private:
  absl::StatusOr<GenerationResult> RunOnSlot(int slot, const GenerationRequest& request,
                                             const std::function<void(int32_t)>& on_token);
  absl::Status Prefill(int slot, const std::vector<int32_t>& prompt, bool mtp_heads,
                       ForwardOutput* out);

  Backend* backend_;
  StateCache* cache_;
  GeneratorOptions options_;
};

}  // namespace xlserve
