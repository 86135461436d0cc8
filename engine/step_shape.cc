#include "engine/step_shape.h"

#include <algorithm>

namespace xlserve {

bool DecodeOnlyStep(std::span<const SequenceInput> batch) {
  return !batch.empty() && std::all_of(batch.begin(), batch.end(), [](const SequenceInput& s) {
    return s.tokens.size() == 1 || s.defer_commit;
  });
}

bool UniformDecodeStep(std::span<const SequenceInput> batch) {
  if (batch.empty()) return false;
  const SequenceInput& first = batch.front();
  if (first.tokens.size() != 1 && !first.defer_commit) return false;
  return std::all_of(batch.begin(), batch.end(), [&](const SequenceInput& s) {
    return s.tokens_only == first.tokens_only && s.tokens.size() == first.tokens.size() &&
           s.all_logits == first.all_logits && s.mtp_heads == first.mtp_heads && s.defer_commit == first.defer_commit;
  });
}

}  // namespace xlserve
