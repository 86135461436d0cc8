#include "engine/generator.h"

#include <algorithm>
#include <string>

#include "engine/sampling/sampler.h"
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
  RETURN_IF_ERROR(ValidateSamplingParams(request.sampling));
  ASSIGN_OR_RETURN(const int slot, cache_->Acquire());
  absl::StatusOr<GenerationResult> result = RunOnSlot(slot, request, on_token);
  RETURN_IF_ERROR(cache_->Release(slot));
  return result;
}

absl::StatusOr<GenerationResult> Generator::RunOnSlot(
    int slot, const GenerationRequest& request, const std::function<void(int32_t)>& on_token) {
  GenerationResult result;
  ForwardOutput out;
  const std::vector<int32_t>& prompt = request.prompt_ids;
  const size_t piece = static_cast<size_t>(std::max(1, options_.prefill_chunk_tokens));
  for (size_t begin = 0; begin < prompt.size(); begin += piece) {
    SequenceInput seq;
    seq.slot = slot;
    seq.tokens = std::span<const int32_t>(prompt).subspan(begin, std::min(piece, prompt.size() - begin));
    RETURN_IF_ERROR(backend_->Forward(std::span<const SequenceInput>(&seq, 1), &out));
  }
  const std::span<const float> last = out.LastRow(0);
  result.prompt_last_logits.assign(last.begin(), last.end());

  ASSIGN_OR_RETURN(Sampler sampler, Sampler::Create(request.sampling));
  std::vector<float> logits = result.prompt_last_logits;
  while (static_cast<int>(result.tokens.size()) < request.max_new_tokens) {
    const TokenHistory history{prompt, result.tokens};
    ASSIGN_OR_RETURN(const int32_t token, sampler.Sample(logits, history));
    result.tokens.push_back(token);
    if (on_token) on_token(token);
    if (std::find(request.stop_token_ids.begin(), request.stop_token_ids.end(), token) !=
        request.stop_token_ids.end()) {
      result.finish_reason = FinishReason::kStop;
      break;
    }
    if (static_cast<int>(result.tokens.size()) == request.max_new_tokens) break;
    SequenceInput seq;
    seq.slot = slot;
    seq.tokens = std::span<const int32_t>(&result.tokens.back(), 1);
    RETURN_IF_ERROR(backend_->Forward(std::span<const SequenceInput>(&seq, 1), &out));
    ++result.decode_steps;
    const std::span<const float> row = out.LastRow(0);
    logits.assign(row.begin(), row.end());
  }
  return result;
}

}  // namespace xlserve
