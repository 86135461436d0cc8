#include "engine/generator.h"

#include <algorithm>
#include <string>

#include "engine/batch_decoder.h"
#include "base/status_macros.h"

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
  BatchDecoder decoder(backend_);
  ForwardOutput out;
  RETURN_IF_ERROR(Prefill(slot, request.prompt_ids, decoder.SpeculationEnabled(request), &out));
  BatchDecoder::TokenCallback callback;
  if (on_token) callback = [&on_token](int32_t token, std::span<const float>) { on_token(token); };
  ASSIGN_OR_RETURN(const int id, decoder.Add(slot, request, out, 0, std::move(callback)));
  while (!decoder.finished(id)) RETURN_IF_ERROR(decoder.Step());
  GenerationResult result = decoder.Remove(id);
  const std::span<const float> last = out.LastRow(0);
  result.prompt_last_logits.assign(last.begin(), last.end());
  return result;
}

}  // namespace xlserve
