// Picks and creates the backend for a loaded model from a device name: the CPU reference, or an
// accelerator this binary was built with (runtime/accelerators.h).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_weights.h"

namespace xlserve {

struct BackendOptions {
  std::string device = "cpu";  // "cpu" (the reference), "cuda", or "auto" (cuda when a GPU is present)
  int num_threads = 0;         // CPU backend: 0 = one per hardware thread
  int chunk_size = 64;         // tokens per chunk of the chunkwise prefill
  // Storage of the recurrent state: "f32", or "bf16" (CUDA only: half the state traffic per
  // decode step, the maths stays fp32).
  std::string state_dtype = "f32";
  // Products with bf16 weights: "exact" (~fp32), "bf16" (bf16 activations into the tensor cores,
  // fp32 accumulation; the CPU rounds them the same way, as the GPU path's reference, gaining no
  // speed), or "auto": bf16 for a bf16 checkpoint on CUDA, else exact.
  std::string precision = "auto";
};

// The precision `setting` ("auto", "exact" or "bf16") means for `weights` on `device` ("cpu" or
// "cuda", resolved); INVALID_ARGUMENT for an unknown setting.
absl::StatusOr<Precision> ResolvePrecision(const std::string& setting, const std::string& device,
                                           const ModelWeights& weights);

// INVALID_ARGUMENT for an unknown device, state dtype or precision, or bf16 state on the CPU;
// UNAVAILABLE when the device is not usable here, including a build without it ("auto" then
// picks the CPU).
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options);

}  // namespace xlserve
