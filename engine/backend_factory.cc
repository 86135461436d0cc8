#include "engine/backend_factory.h"

#include "engine/cpu/cpu_backend.h"

namespace xlserve {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options) {
  if (options.device == "cpu") {
    CpuBackendOptions cpu;
    cpu.num_threads = options.num_threads;
    cpu.chunk_size = options.chunk_size;
    absl::StatusOr<std::unique_ptr<CpuBackend>> backend = CpuBackend::Create(std::move(weights), cpu);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(std::move(*backend));
  }
  if (options.device == "cuda") {
    return absl::UnavailableError("the CUDA backend is not part of this build; use --device cpu");
  }
  return absl::InvalidArgumentError("unknown device '" + options.device +
                                    "' (expected cpu or cuda)");
}

}  // namespace xlserve
