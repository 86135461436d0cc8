// The model's weights on the GPU, arranged for the CUDA forward pass.
//
// Matrices keep their checkpoint type (BF16 stays bf16, F32 stays fp32, F16 is widened to
// fp32). The six projections that read the mLSTM sub-layer's normed input (q, k, v, ogate,
// igate, fgate) are stacked into one matrix, and so are the FFN's up_gate and up, so that each
// is one GEMM; if the stacked parts differ in type the stack is fp32. Vectors (norm weights,
// biases) are fp32; a stack's bias has zeros for parts without one.
// Ownership: DeviceWeights owns every device allocation it holds and frees them on
// destruction; it is move-only.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"
#include "kernels/launchers.h"

namespace xlserve::kernels {

struct DeviceMatrix {
  const void* data = nullptr;  // [rows, cols] row-major, `type`
  WeightType type = WeightType::kF32;
  int rows = 0, cols = 0;
};

struct DeviceBlock {
  const float* norm_mlstm_w = nullptr;
  const float* norm_mlstm_b = nullptr;
  // Rows: q [qk], k [qk], v [v], ogate [v], igate [heads], fgate [heads] (ProjColumns).
  DeviceMatrix proj;
  const float* proj_b = nullptr;  // always present (the gate biases)
  const float* mh_norm_w = nullptr;
  const float* mh_norm_b = nullptr;
  DeviceMatrix out_proj;
  const float* out_proj_b = nullptr;
  const float* norm_ffn_w = nullptr;
  const float* norm_ffn_b = nullptr;
  // Rows: up_gate [ffn], then up [ffn]; with up_interleaved in kSwiGluGroup groups of each
  // (launchers.h), and so is up_b.
  DeviceMatrix up;
  const float* up_b = nullptr;
  bool up_interleaved = false;
  DeviceMatrix down;
  const float* down_b = nullptr;
};

// Column offsets of each part inside the stacked projection's output row.
struct ProjColumns {
  int q = 0, k = 0, v = 0, o = 0, igate = 0, fgate = 0, width = 0;
  static ProjColumns ForModel(const ModelConfig& config);
};

class DeviceWeights {
 public:
  // Copies every tensor of `weights` (trunk and MTP heads) to the current CUDA device. The
  // host weights are only read during the call.
  static absl::StatusOr<std::unique_ptr<DeviceWeights>> Upload(const ModelWeights& weights);
  ~DeviceWeights();
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  DeviceMatrix embeddings;  // [vocab, d]
  DeviceMatrix lm_head;     // [vocab, d]; shares the embeddings' memory when tied
  const float* out_norm_w = nullptr;
  std::vector<DeviceBlock> blocks;
  // MTP heads 1..n-1 (one of the two, by head type).
  std::vector<DeviceBlock> head_blocks;
  std::vector<DeviceMatrix> head_linear;  // [d, d]
  bool any_bf16 = false;  // some matrix is bf16: GEMM inputs need their split pairs
  int64_t matrix_bytes = 0;

 private:
  DeviceWeights() = default;
  absl::StatusOr<DeviceBlock> UploadBlock(const BlockWeights& b);
  absl::StatusOr<const float*> UploadVector(const TensorView& t);
  // interleave > 0: two parts of equal rows, their rows in groups of that many of each in turn.
  absl::StatusOr<const float*> UploadStackedBias(const std::vector<std::pair<const TensorView*, const TensorView*>>& parts,
                                                 int interleave = 0);
  absl::StatusOr<DeviceMatrix> UploadMatrix(const std::vector<const TensorView*>& parts, int interleave = 0);
  absl::StatusOr<void*> Copy(const void* host, size_t bytes);

  std::vector<void*> allocations_;
};

}  // namespace xlserve::kernels
