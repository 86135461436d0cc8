// Support for the GPU tests: a CUDA backend and the CPU reference, each with allocated slots
// (Catch2 REQUIREs that they could be made); logits are compared with golden_case.h's MaxAbsDiff.
#pragma once

#include <memory>

#include "engine/backend.h"
#include "engine/model/model_weights.h"
#include "engine/util/dtype.h"
#include "tests/engine/golden_case.h"  // MaxAbsDiff

namespace xlserve::testing {

// The exact precision against the CPU reference from the same fp32 state: bf16 weights are exact
// in bf16 and the activations enter the tensor cores as a hi+lo pair (~2^-17 relative), so only
// the summation order differs, ~1e-5 on logits of a few units; this leaves room for long prompts.
inline constexpr double kExactTol = 1e-3;

std::unique_ptr<Backend> MakeCudaBackend(std::shared_ptr<const ModelWeights> weights, int slots,
                                         DType state = DType::kF32, Precision precision = Precision::kExact);
std::unique_ptr<Backend> MakeCpuBackend(std::shared_ptr<const ModelWeights> weights, int slots,
                                        Precision precision = Precision::kExact);

// Random bf16 weights of a small model with one mLSTM head of xLSTM-7b's size (dqk 256, dv 512):
// the kernels run with their production tiling, the CPU reference keeps up. A larger
// ffn_proj_factor widens the FFN (17.5: an up matrix of 17,920 rows, wide enough for
// StreamGemm's tilings and so its SwiGLU epilogue).
std::shared_ptr<const ModelWeights> SevenBHeadModel(uint32_t seed, double ffn_proj_factor = 2.667);

}  // namespace xlserve::testing
