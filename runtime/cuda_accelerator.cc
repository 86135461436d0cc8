// FindAccelerator for builds with the CUDA backend: the engine's Accelerator interface over
// kernels/cuda_backend.h, the one place outside kernels/ and its GPU tests that names it.
#include "runtime/accelerators.h"

#include "kernels/cuda_backend.h"

namespace xlserve::runtime {
namespace {

class CudaAccelerator final : public Accelerator {
 public:
  std::string_view name() const override { return "cuda"; }
  int DeviceCount() const override { return kernels::CudaDeviceCount(); }

  absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                         DType state_dtype, Precision precision) const override {
    kernels::CudaBackendOptions options;
    options.state_dtype = state_dtype;
    options.precision = precision;
    return kernels::CreateCudaBackend(std::move(weights), options);
  }

  absl::StatusOr<double> MeasureCopyBandwidth(int64_t bytes) const override {
    return kernels::MeasureCopyBandwidth(bytes);
  }
  absl::StatusOr<double> MeasureBf16GemmFlops(int n) const override { return kernels::MeasureBf16GemmFlops(n); }

  absl::Status SetStageProfiling(Backend* backend, bool on) const override {
    return kernels::SetStageProfiling(backend, on);
  }
  absl::StatusOr<StageProfile> TakeStageProfile(Backend* backend) const override {
    return kernels::TakeStageProfile(backend);
  }
  absl::StatusOr<std::vector<GemmChoice>> GemmChoices(Backend* backend) const override {
    return kernels::GemmChoices(backend);
  }
  absl::StatusOr<int64_t> DecodeGraphBuilds(const Backend* backend) const override {
    return kernels::DecodeGraphBuilds(backend);
  }
};

}  // namespace

const Accelerator* FindAccelerator(std::string_view name) {
  static const CudaAccelerator cuda;
  return name == cuda.name() ? &cuda : nullptr;
}

}  // namespace xlserve::runtime
