#include "runtime/backend_factory.h"

#include "engine/cpu/cpu_backend.h"
#include "runtime/accelerators.h"

namespace xlserve {
namespace {

// A checkpoint whose every matrix is bf16: its weights were trained or converted for bf16
// inference, so bf16 activations lose nothing its authors did not expect.
bool Bf16Checkpoint(const ModelWeights& w) {
  auto bf16 = [](const std::vector<BlockWeights>& blocks) {
    for (const BlockWeights& b : blocks) {
      for (const TensorView* t : {&b.q_w, &b.k_w, &b.v_w, &b.ogate_w, &b.igate_w, &b.fgate_w, &b.out_proj_w,
                                  &b.up_gate_w, &b.up_w, &b.down_w}) {
        if (t->dtype != DType::kBF16) return false;
      }
    }
    return true;
  };
  for (const LinearHeadWeights& h : w.mtp_linear_heads) {
    if (h.proj_w.dtype != DType::kBF16) return false;
  }
  return w.lm_head.dtype == DType::kBF16 && bf16(w.blocks) && bf16(w.mtp_block_heads);
}

}  // namespace

Precision ResolvePrecision(PrecisionSetting setting, Device device, const ModelWeights& weights) {
  switch (setting) {
    case PrecisionSetting::kExact:
      return Precision::kExact;
    case PrecisionSetting::kBf16:
      return Precision::kBf16;
    case PrecisionSetting::kAuto:
      break;
  }
  return device == Device::kCuda && Bf16Checkpoint(weights) ? Precision::kBf16 : Precision::kExact;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options) {
  const Accelerator* cuda = runtime::FindAccelerator("cuda");
  Device device = options.device;
  if (device == Device::kAuto) device = cuda != nullptr && cuda->DeviceCount() > 0 ? Device::kCuda : Device::kCpu;
  if (options.state_dtype != DType::kF32 && options.state_dtype != DType::kBF16) {
    return absl::InvalidArgumentError("a recurrent state is stored as f32 or bf16, not " +
                                      std::string(DTypeName(options.state_dtype)));
  }
  const Precision precision = ResolvePrecision(options.precision, device, *weights);
  if (device == Device::kCpu) {
    if (options.state_dtype != DType::kF32) {
      return absl::InvalidArgumentError("state dtype bf16 needs the CUDA backend; the CPU reference keeps f32");
    }
    CpuBackendOptions cpu;
    cpu.num_threads = options.num_threads;
    cpu.chunk_size = options.chunk_size;
    cpu.precision = precision;
    cpu.tensor_parallel = options.tensor_parallel;
    absl::StatusOr<std::unique_ptr<CpuBackend>> backend = CpuBackend::Create(std::move(weights), cpu);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(std::move(*backend));
  }
  if (options.tensor_parallel != 1) {
    return absl::UnimplementedError("tensor parallel over " + std::to_string(options.tensor_parallel) +
                                    " ranks runs on the CPU backend only (--device cpu); the CUDA backend runs one GPU");
  }
  if (cuda == nullptr) {
    return absl::UnavailableError(
        "this xlserve was built without the CUDA backend (rebuild with --config=cuda where the CUDA toolkit is "
        "installed, or use --device cpu)");
  }
  return cuda->CreateBackend(std::move(weights), options.state_dtype, precision);
}

}  // namespace xlserve
