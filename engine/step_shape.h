// The shape of a Forward() batch as a backend that replays recorded steps (the CUDA backend's
// graphs) sees it: decode rows only, and every sequence alike.
#pragma once

#include <span>

#include "engine/backend.h"

namespace xlserve {

// Every sequence decodes: one token, or a deferred verify of several (no prompt chunk).
bool DecodeOnlyStep(std::span<const SequenceInput> batch);

// A decode step whose sequences all share one shape: the same token count, logits, heads,
// deferral and tokens_only. Only such a step, tokens only, can replay a recorded one; a decode
// step of mixed shapes (a verify beside plain rows, drafts of different lengths, one sequence
// that reads its logits among others that do not) runs eagerly.
bool UniformDecodeStep(std::span<const SequenceInput> batch);

}  // namespace xlserve
