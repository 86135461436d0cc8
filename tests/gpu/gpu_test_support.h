// Support for the GPU tests: a CUDA backend and the CPU reference, each with allocated slots
// (Catch2 REQUIREs that they could be made), and the comparison of logits.
#pragma once

#include <memory>
#include <span>

#include "engine/backend.h"
#include "engine/model/model_weights.h"
#include "engine/util/dtype.h"

namespace xlserve::testing {

std::unique_ptr<Backend> MakeCudaBackend(std::shared_ptr<const ModelWeights> weights, int slots,
                                         DType state = DType::kF32);
std::unique_ptr<Backend> MakeCpuBackend(std::shared_ptr<const ModelWeights> weights, int slots);

// max |a - b| over equally long arrays; infinity when a difference is NaN.
double MaxAbsDiff(std::span<const float> a, std::span<const float> b);

}  // namespace xlserve::testing
