// Accelerator: what the engine and its benchmarks may ask of an accelerator backend family
// (today CUDA) beyond the Backend interface, so that nothing above the engine names kernels/.
//
// An implementation lives beside its backend and is handed out by the binary's runtime
// (runtime/accelerators.h), which is the only code that links device libraries. Builds without
// the accelerator simply hand out none. Implementations are stateless and safe to share.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_weights.h"
#include "engine/util/dtype.h"

namespace xlserve {

// Milliseconds of device time per stage name, largest first.
using StageProfile = std::vector<std::pair<std::string, double>>;

// What timing chose for one weight GEMM shape (n outputs, depth k, `rows` activation rows): the
// candidates that ran, each with the ms of its timed calls, and the one taken. Benchmarks
// report these, so that a choice that differs between two runs of one binary shows.
struct GemmChoice {
  int n = 0, k = 0, rows = 0;
  bool swiglu = false;  // the up projection with SwiGLU fused, against the product + SwiGLU pass
  std::vector<std::pair<std::string, double>> candidates_ms;
  std::string chosen;
  // Where the candidates' times alone were too close to call (Backend::OpenChoices): the ms of
  // warm-up's pass with each of the close ones, which decided `chosen`.
  std::vector<std::pair<std::string, double>> pass_ms;
};

class Accelerator {
 public:
  virtual ~Accelerator() = default;

  // The device name users select it by ("cuda").
  virtual std::string_view name() const = 0;
  // Usable devices on this machine; 0 when there is no driver or no device.
  virtual int DeviceCount() const = 0;

  // A backend on device 0 for `weights` (kept alive by the backend), with the recurrent state
  // stored as `state_dtype` (kF32 or kBF16) and products in `precision`. UNAVAILABLE without a
  // device, INVALID_ARGUMENT for a dtype or model shape the backend does not support.
  virtual absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                                 DType state_dtype, Precision precision) const = 0;

  // Physical limits that benchmarks report their figures against, measured on device 0:
  // device-to-device copy bandwidth in bytes/s (read + write) over `bytes`, and the FLOP/s of
  // an n x n x n bf16 GEMM with fp32 accumulation.
  virtual absl::StatusOr<double> MeasureCopyBandwidth(int64_t bytes) const = 0;
  virtual absl::StatusOr<double> MeasureBf16GemmFlops(int n) const = 0;

  // Per-stage timing of Forward() on a backend this accelerator created (INVALID_ARGUMENT for
  // any other backend). While on, stages are bracketed by device events, which adds small gaps;
  // TakeStageProfile returns the sums since profiling was switched on and resets them.
  virtual absl::Status SetStageProfiling(Backend* backend, bool on) const = 0;
  virtual absl::StatusOr<StageProfile> TakeStageProfile(Backend* backend) const = 0;

  // The GEMM choices that timing made on a backend this accelerator created, in the order made
  // (INVALID_ARGUMENT for any other backend).
  virtual absl::StatusOr<std::vector<GemmChoice>> GemmChoices(Backend* backend) const = 0;

  // Decode and verify steps on a backend this accelerator created that ran eagerly or were
  // captured instead of replaying a graph, since the backend was made (INVALID_ARGUMENT for any
  // other backend). After warm-up, timed steps should add none.
  virtual absl::StatusOr<int64_t> DecodeGraphBuilds(const Backend* backend) const = 0;
};

}  // namespace xlserve
