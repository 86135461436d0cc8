// The CUDA backend: the xLSTM forward pass on one GPU behind the engine's Backend interface.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/accelerator.h"
#include "engine/backend.h"
#include "engine/model/model_weights.h"
#include "engine/util/dtype.h"

namespace xlserve::kernels {

struct CudaBackendOptions {
  int device = 0;
  // Storage of the recurrent state on the GPU: kF32 or kBF16 (half the bytes per decode step;
  // the maths stays fp32 and m stays fp32). ReadSlot/WriteSlot always speak fp32.
  DType state_dtype = DType::kF32;
  // How activations enter products with bf16 weights (kernels/launchers.h): the split pair
  // (kExact) or bf16 alone (kBf16).
  Precision precision = Precision::kExact;
};

// The backend supports self-speculation (MTP heads, deferred verify and Commit()); a deferred
// sequence carries at most 8 tokens. UNAVAILABLE when no CUDA device can be used; INVALID_ARGUMENT for a state
// dtype other than F32/BF16 or head sizes the kernels do not support. The weights are copied to
// the GPU during the call (see kernels/device_weights.h); the backend keeps `weights` alive.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const ModelWeights> weights,
                                                           const CudaBackendOptions& options);

// Number of usable CUDA devices (0 when there is no driver or no GPU).
int CudaDeviceCount();

// Device-to-device copy bandwidth of the current GPU in bytes/s, counting bytes read plus
// bytes written: the practical HBM limit that decode steps are measured against.
absl::StatusOr<double> MeasureCopyBandwidth(int64_t bytes);

// FLOP/s of a cuBLAS bf16 GEMM (fp32 accumulation) of n x n x n on the current GPU: the
// practical tensor-core limit that prefill is measured against.
absl::StatusOr<double> MeasureBf16GemmFlops(int n);

// Per-stage GPU time of a CUDA backend's Forward() calls (benchmarks): while on, each stage
// of a forward pass is bracketed by CUDA events (which adds small gaps between kernels).
// `backend` must come from CreateCudaBackend (INVALID_ARGUMENT otherwise).
absl::Status SetStageProfiling(Backend* backend, bool on);
// Milliseconds per stage name summed since profiling was switched on, largest first; resets.
absl::StatusOr<std::vector<std::pair<std::string, double>>> TakeStageProfile(Backend* backend);
// Greedy decode and verify steps that ran eagerly or were captured as a graph instead of
// replaying one, since the backend was made. Warm-up runs every such shape, so after it the count
// stays put.
absl::StatusOr<int64_t> DecodeGraphBuilds(const Backend* backend);
// The weight GEMM choices that timing made on the backend, in the order made.
absl::StatusOr<std::vector<GemmChoice>> GemmChoices(Backend* backend);
// How close (a fraction of the fastest) timing's runner-ups must come to leave a GEMM choice open
// for warm-up's passes (Backend::OpenChoices); tests widen it so that every choice opens.
absl::Status SetGemmOpenGap(Backend* backend, float gap);

}  // namespace xlserve::kernels
