// Picks and creates the backend for a loaded model from a device name: the CPU reference, or an
// accelerator this binary was built with (runtime/accelerators.h).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/device.h"
#include "engine/model/model_weights.h"
#include "engine/util/dtype.h"

namespace xlserve {

struct BackendOptions {
  Device device = Device::kCpu;
  int num_threads = 0;  // CPU backend: 0 = one per hardware thread
  int chunk_size = 64;  // tokens per chunk of the chunkwise prefill
  // Storage of the recurrent state: kF32, or kBF16 (CUDA only: half the state traffic per
  // decode step, the maths stays fp32).
  DType state_dtype = DType::kF32;
  // Products with bf16 weights: kExact (~fp32), kBf16 (bf16 activations into the tensor cores,
  // fp32 accumulation; the CPU rounds them the same way, as the GPU path's reference, gaining no
  // speed), or kAuto: bf16 for a bf16 checkpoint on CUDA, else exact.
  PrecisionSetting precision = PrecisionSetting::kAuto;
  // Ranks of a tensor-parallel split (engine/parallel/): the CPU backend runs them as threads;
  // CUDA runs one.
  int tensor_parallel = 1;
};

// The precision `setting` means for `weights` on `device` (kCpu or kCuda, resolved).
Precision ResolvePrecision(PrecisionSetting setting, Device device, const ModelWeights& weights);

// INVALID_ARGUMENT for a state dtype other than kF32 and kBF16, bf16 state on the CPU, or a
// tensor-parallel rank count the model cannot split into; UNIMPLEMENTED for more than one rank on
// CUDA; UNAVAILABLE when the device is not usable here, including a build without it (kAuto then
// picks the CPU).
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options);

}  // namespace xlserve
