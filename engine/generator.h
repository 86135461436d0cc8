// Generator: runs one sequence from prompt to finish on a backend — prefill, then one
// decode step per token. The CLI's `generate` uses it directly; the server's scheduler
// batches many sequences instead but follows the same prefill/sample/step contract.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/sampling/sampling_params.h"
#include "engine/state_cache.h"

namespace xlserve {

struct GenerationRequest {
  std::vector<int32_t> prompt_ids;  // at least one id, each < vocab_size
  int max_new_tokens = 32;          // >= 0; 0 only prefills (the prompt's logits still come out)
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
};

enum class FinishReason { kLength, kStop };

struct GenerationResult {
  std::vector<int32_t> tokens;            // generated ids, the stop token included
  std::vector<float> prompt_last_logits;  // [vocab]: the logits after the last prompt token
  FinishReason finish_reason = FinishReason::kLength;
  int decode_steps = 0;
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

  Backend* backend_;
  StateCache* cache_;
  GeneratorOptions options_;
};

}  // namespace xlserve
