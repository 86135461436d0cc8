// Checks every backend applies to a Forward() batch before touching any state.
#pragma once

#include <span>

#include "absl/status/status.h"
#include "engine/backend.h"

namespace xlserve {

// OUT_OF_RANGE for a slot outside [0, num_slots) or a token outside [0, vocab_size);
// INVALID_ARGUMENT for an empty batch, an empty sequence or a slot named twice;
// FAILED_PRECONDITION for MTP heads or deferred commits a backend cannot provide.
absl::Status ValidateForwardBatch(std::span<const SequenceInput> batch, int num_slots, int vocab_size,
                                  bool has_mtp_heads, bool supports_speculation);

}  // namespace xlserve
