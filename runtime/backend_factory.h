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
};

// INVALID_ARGUMENT for an unknown device or state dtype, or bf16 state on the CPU;
// UNAVAILABLE when the device is not usable here, including a build without it ("auto" then
// picks the CPU).
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options);

}  // namespace xlserve
