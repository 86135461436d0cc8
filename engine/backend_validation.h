// Checks every backend applies to a Forward() batch before touching any state.
#pragma once

#include <span>

#include "absl/status/status.h"
#include "engine/backend.h"

namespace xlserve {

// OUT_OF_RANGE for a slot outside [0, num_slots) or a token outside [0, vocab_size);
// INVALID_ARGUMENT for an empty batch, an empty sequence, a slot named twice, or a `sample`
// with invalid parameters or a history id outside [0, vocab_size) (the sampler's messages);
// FAILED_PRECONDITION for MTP heads or deferred commits a backend cannot provide;
// UNIMPLEMENTED for a `sample` on a backend that does not sample on the device.
absl::Status ValidateForwardBatch(std::span<const SequenceInput> batch, int num_slots, int vocab_size,
                                  bool has_mtp_heads, bool supports_speculation, bool samples_on_device);

}  // namespace xlserve
