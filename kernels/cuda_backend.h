// The CUDA backend: the xLSTM forward pass on one GPU behind the engine's Backend interface.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_weights.h"

namespace xlserve::kernels {

struct CudaBackendOptions {
  int device = 0;
};

// MTP heads are not run on the GPU yet (SupportsSpeculation() is false), so requests decode
// plainly there. UNAVAILABLE when no CUDA device can be used; the weights are copied to the GPU (F32 and BF16
// as stored, F16 widened to F32) and the host copy may be dropped afterwards.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const ModelWeights> weights,
                                                           const CudaBackendOptions& options);

// Number of usable CUDA devices (0 when there is no driver or no GPU).
int CudaDeviceCount();

// Device-to-device copy bandwidth of the current GPU in bytes/s, counting bytes read plus
// bytes written: the practical HBM limit that decode steps are measured against.
absl::StatusOr<double> MeasureCopyBandwidth(int64_t bytes);

}  // namespace xlserve::kernels
