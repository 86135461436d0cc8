// Host-side entry points of the CUDA kernels. Plain C++: the backend (compiled by the host
// compiler) calls these; each launches on `stream` and returns the launch's cudaError_t.
// Pointers are device pointers; matrices are row-major; "rows" index tokens.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace xlserve::kernels {

// Storage type of a weight tensor: the checkpoint's own (F16 checkpoints are widened to F32
// at upload).
enum class WeightType { kF32, kBF16 };

// out[r, :] = table[ids[r], :] as fp32. table: [vocab, d].
cudaError_t EmbeddingGather(const void* table, WeightType type, const int32_t* ids, int rows, int d, float* out,
                            cudaStream_t stream);

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w (+ b); b may be null. x, out: [rows, d].
cudaError_t RmsNorm(const float* x, const void* w, const void* b, WeightType type, int rows, int d, float eps,
                    float* out, cudaStream_t stream);

// y[r, n] = sum_k x[r, k] w[n, k] (+ bias[n]) for rows <= kGemvMaxRows: one pass over w, fp32
// activations and accumulation. x: [rows, k] (stride k), w: [n, k], y: [rows, n] (stride n).
constexpr int kGemvMaxRows = 8;
cudaError_t GemvSmallRows(const float* x, const void* w, const void* bias, WeightType type, int rows, int n, int k,
                          float* y, cudaStream_t stream);

// bias add for the cuBLAS path: y[r, n] += bias[n].
cudaError_t AddBias(float* y, const void* bias, WeightType type, int rows, int n, cudaStream_t stream);

// fp32 -> two bf16 parts, hi = bf16(x) and lo = bf16(x - hi), so that a bf16 tensor-core GEMM
// over both keeps ~16 mantissa bits of the activations (x = hi + lo to 2^-17 relative).
cudaError_t SplitFloatToBf16(const float* in, void* hi, void* lo, int64_t count, cudaStream_t stream);

// x[i] = cap * tanh(x[i] / cap).
cudaError_t SoftCap(float* x, int64_t count, float cap, cudaStream_t stream);

// x[i] += y[i].
cudaError_t AddInPlace(float* x, const float* y, int64_t count, cudaStream_t stream);

// gate[i] = silu(gate[i]) * up[i].
cudaError_t SwiGlu(float* gate, const float* up, int64_t count, cudaStream_t stream);

// Per row and head: h <- LayerNorm_head(h) (biased variance, eps) * w (+ b), then * sigmoid(o).
// h, o: [rows, heads * head_dim]; w, b: [heads * head_dim].
cudaError_t HeadNormGate(float* h, const float* o, const void* w, const void* b, WeightType type, int rows,
                         int heads, int head_dim, float eps, cudaStream_t stream);

// out[i, :] = x[rows[i], :], x: [*, d].
cudaError_t GatherRows(const float* x, const int32_t* rows, int count, int d, float* out, cudaStream_t stream);

// The mLSTM recurrence over each sequence's tokens (see mlstm_recurrent.cu for the maths).
struct MlstmParams {
  const float* q;       // [rows, heads * dqk]
  const float* k;       // [rows, heads * dqk]
  const float* v;       // [rows, heads * dv]
  const float* igate;   // [rows, heads], soft-capped pre-activations
  const float* fgate;   // [rows, heads]
  float* h;             // [rows, heads * dv]
  float* states;        // slot pool: num_slots x slot_floats
  const int32_t* seq_row_begin;  // [num_seqs + 1]
  const int32_t* seq_slot;       // [num_seqs]
  int num_seqs;
  int heads;
  int dqk;
  int dv;
  int64_t slot_floats;
  int64_t layer_offset;  // floats from a slot's start to this layer's first head
  float eps;
};
cudaError_t MlstmRecurrent(const MlstmParams& p, cudaStream_t stream);

}  // namespace xlserve::kernels
