#include "engine/backend_validation.h"

#include <string>
#include <vector>

namespace xlserve {

absl::Status ValidateForwardBatch(std::span<const SequenceInput> batch, int num_slots, int vocab_size,
                                  bool has_mtp_heads, bool supports_speculation, bool samples_on_device) {
  if (batch.empty()) return absl::InvalidArgumentError("forward: empty batch");
  std::vector<bool> seen(num_slots, false);
  for (const SequenceInput& s : batch) {
    if (s.slot < 0 || s.slot >= num_slots) {
      return absl::OutOfRangeError("forward: state slot " + std::to_string(s.slot) + " out of range (" +
                                   std::to_string(num_slots) + " slots)");
    }
    if (seen[s.slot]) {
      return absl::InvalidArgumentError("forward: slot " + std::to_string(s.slot) + " appears twice in one batch");
    }
    seen[s.slot] = true;
    if (s.tokens.empty()) return absl::InvalidArgumentError("forward: sequence with no tokens");
    if (s.mtp_heads && !has_mtp_heads) {
      return absl::FailedPreconditionError("forward: the model has no multi-token-prediction heads");
    }
    if ((s.mtp_heads || s.defer_commit) && !supports_speculation) {
      return absl::FailedPreconditionError("forward: this backend does not run MTP heads or deferred commits");
    }
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= vocab_size) {
        return absl::OutOfRangeError("token id " + std::to_string(t) + " is outside the vocabulary [0, " +
                                     std::to_string(vocab_size) + ")");
      }
    }
    if (s.sample != nullptr) {
      if (!samples_on_device) {
        return absl::UnimplementedError("forward: this backend does not sample on the device (SequenceInput::sample)");
      }
      // Checked here, before any state moves, rather than by the sampling kernel.
      if (absl::Status st = ValidateSamplingParams(s.sample->params); !st.ok()) return st;
      if (absl::Status st = ValidateTokenHistory(s.sample->history, vocab_size); !st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

}  // namespace xlserve
