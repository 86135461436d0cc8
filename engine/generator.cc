#include "engine/generator.h"

#include <algorithm>
#include <string>

#include "engine/internal/token_emitter.h"
#include "engine/util/status_macros.h"

namespace xlserve {

Generator::Generator(Backend* backend, StateCache* cache, const GeneratorOptions& options)
    : backend_(backend), cache_(cache), options_(options) {}

absl::StatusOr<GenerationResult> Generator::Generate(
    const GenerationRequest& request, const std::function<void(int32_t)>& on_token) {
  if (request.prompt_ids.empty()) return absl::InvalidArgumentError("the prompt is empty");
  if (request.max_new_tokens < 0) {
    return absl::InvalidArgumentError("max_new_tokens must be >= 0, got " +
                                      std::to_string(request.max_new_tokens));
  }
  if (request.num_draft < 0) {
    return absl::InvalidArgumentError("num_draft must be >= 0, got " + std::to_string(request.num_draft));
  }
  RETURN_IF_ERROR(ValidateSamplingParams(request.sampling));
  ASSIGN_OR_RETURN(const int slot, cache_->Acquire());
  absl::StatusOr<GenerationResult> result = RunOnSlot(slot, request, on_token);
  RETURN_IF_ERROR(cache_->Release(slot));
  return result;
}

absl::Status Generator::Prefill(int slot, const std::vector<int32_t>& prompt, bool mtp_heads,
                                ForwardOutput* out) {
  const size_t piece = static_cast<size_t>(std::max(1, options_.prefill_chunk_tokens));
  for (size_t begin = 0; begin < prompt.size(); begin += piece) {
    SequenceInput seq;
    seq.slot = slot;
    seq.tokens = std::span<const int32_t>(prompt).subspan(begin, std::min(piece, prompt.size() - begin));
    seq.mtp_heads = mtp_heads;
    RETURN_IF_ERROR(backend_->Forward(std::span<const SequenceInput>(&seq, 1), out));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerationResult> Generator::RunOnSlot(
    int slot, const GenerationRequest& request, const std::function<void(int32_t)>& on_token) {
  GenerationResult result;
  result.speculative = request.speculation != SpeculationMode::kOff && request.num_draft > 0 &&
                       backend_->num_mtp_heads() > 0 && backend_->SupportsSpeculation();
  ForwardOutput out;
  RETURN_IF_ERROR(Prefill(slot, request.prompt_ids, result.speculative, &out));
  const std::span<const float> last = out.LastRow(0);
  result.prompt_last_logits.assign(last.begin(), last.end());
  if (request.max_new_tokens == 0) return result;

  ASSIGN_OR_RETURN(Sampler sampler, Sampler::Create(request.sampling));
  Emitter emit{request, result, on_token};
  if (result.speculative) {
    RETURN_IF_ERROR(DecodeSpeculative(slot, request, sampler, out, emit, result));
  } else {
    RETURN_IF_ERROR(DecodePlain(slot, request, sampler, result.prompt_last_logits, emit));
  }
  return result;
}

absl::Status Generator::DecodePlain(int slot, const GenerationRequest& request, Sampler& sampler,
                                    std::vector<float> logits, Emitter& emit) {
  ForwardOutput out;
  for (;;) {
    const TokenHistory history{request.prompt_ids, emit.result.tokens};
    ASSIGN_OR_RETURN(const int32_t token, sampler.Sample(logits, history));
    if (emit.Emit(token)) return absl::OkStatus();
    SequenceInput seq;
    seq.slot = slot;
    seq.tokens = std::span<const int32_t>(&emit.result.tokens.back(), 1);
    RETURN_IF_ERROR(backend_->Forward(std::span<const SequenceInput>(&seq, 1), &out));
    ++emit.result.steps;
    const std::span<const float> row = out.LastRow(0);
    logits.assign(row.begin(), row.end());
  }
}

}  // namespace xlserve
