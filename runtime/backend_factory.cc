#include "runtime/backend_factory.h"

#include "engine/cpu/cpu_backend.h"
#include "runtime/accelerators.h"

namespace xlserve {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options) {
  const Accelerator* cuda = runtime::FindAccelerator("cuda");
  Device device = options.device;
  if (device == Device::kAuto) device = cuda != nullptr && cuda->DeviceCount() > 0 ? Device::kCuda : Device::kCpu;
  if (options.state_dtype != DType::kF32 && options.state_dtype != DType::kBF16) {
    return absl::InvalidArgumentError("a recurrent state is stored as f32 or bf16, not " +
                                      std::string(DTypeName(options.state_dtype)));
  }
  if (device == Device::kCpu) {
    if (options.state_dtype != DType::kF32) {
      return absl::InvalidArgumentError("state dtype bf16 needs the CUDA backend; the CPU reference keeps f32");
    }
    CpuBackendOptions cpu;
    cpu.num_threads = options.num_threads;
    cpu.chunk_size = options.chunk_size;
    absl::StatusOr<std::unique_ptr<CpuBackend>> backend = CpuBackend::Create(std::move(weights), cpu);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(std::move(*backend));
  }
  if (cuda == nullptr) {
    return absl::UnavailableError(
        "this xlserve was built without the CUDA backend (rebuild with --config=cuda where the CUDA toolkit is "
        "installed, or use --device cpu)");
  }
  return cuda->CreateBackend(std::move(weights), options.state_dtype);
}

}  // namespace xlserve
