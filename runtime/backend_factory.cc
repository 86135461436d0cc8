#include "runtime/backend_factory.h"

#include "engine/cpu/cpu_backend.h"
#include "engine/util/status_macros.h"
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

absl::StatusOr<Precision> ResolvePrecision(const std::string& setting, const std::string& device,
                                           const ModelWeights& weights) {
  if (setting == "exact") return Precision::kExact;
  if (setting == "bf16") return Precision::kBf16;
  if (setting == "auto") return device == "cuda" && Bf16Checkpoint(weights) ? Precision::kBf16 : Precision::kExact;
  return absl::InvalidArgumentError("unknown precision '" + setting + "' (expected auto, exact or bf16)");
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options) {
  const Accelerator* cuda = runtime::FindAccelerator("cuda");
  std::string device = options.device;
  if (device == "auto") device = cuda != nullptr && cuda->DeviceCount() > 0 ? "cuda" : "cpu";
  if (options.state_dtype != "f32" && options.state_dtype != "bf16") {
    return absl::InvalidArgumentError("unknown state dtype '" + options.state_dtype + "' (expected f32 or bf16)");
  }
  if (device != "cpu" && device != "cuda") {
    return absl::InvalidArgumentError("unknown device '" + options.device + "' (expected auto, cpu or cuda)");
  }
  ASSIGN_OR_RETURN(const Precision precision, ResolvePrecision(options.precision, device, *weights));
  if (device == "cpu") {
    if (options.state_dtype != "f32") {
      return absl::InvalidArgumentError("state dtype bf16 needs the CUDA backend; the CPU reference keeps f32");
    }
    CpuBackendOptions cpu;
    cpu.num_threads = options.num_threads;
    cpu.chunk_size = options.chunk_size;
    cpu.precision = precision;
    absl::StatusOr<std::unique_ptr<CpuBackend>> backend = CpuBackend::Create(std::move(weights), cpu);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(std::move(*backend));
  }
  if (cuda == nullptr) {
    return absl::UnavailableError(
        "this xlserve was built without the CUDA backend (rebuild with --config=cuda where the CUDA toolkit is "
        "installed, or use --device cpu)");
  }
  return cuda->CreateBackend(std::move(weights), options.state_dtype == "bf16" ? DType::kBF16 : DType::kF32,
                             precision);
}

}  // namespace xlserve
