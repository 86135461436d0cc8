// MlstmRecurrent: the mLSTM cell (DESIGN §3) over each sequence's tokens, one token at a time,
// reading and writing each head's state once per call.
//
// Per sequence s, head h, token t (state C [dqk, dv], n [dqk], m scalar, fp32, in the slot):
//   lf = logsigmoid(f̃_t);  m' = max(lf + m, ĩ_t)
//   f  = exp(lf + m - m');  i = exp(ĩ_t - m')
//   C  = f C + i k_t v_tᵀ;  n = f n + i k_t;  m = m'
//   h_t = (q̂ᵀ C) / (max(|q̂ᵀ n|, exp(-m)) + eps),   q̂ = q_t / sqrt(dqk)
// Layouts: q, k [rows, heads*dqk]; v, h [rows, heads*dv]; gates [rows, heads]; a slot holds, per
// layer and head, C row-major [dqk, dv], then n [dqk], then m (engine/state_layout.h).
// Launch: grid (num_seqs, heads, ceil(dv / kTile)); block kTile threads, thread j owns column
// j of its tile: that column of C lives in shared memory for the whole call (dqk x kTile
// fp32), so C is read once and written once whatever the number of tokens. Every block keeps
// its own copy of n and m (identical arithmetic); the tile-0 block writes them back.
#include "kernels/launchers.h"
#include "kernels/weight_load.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kTile = 64;

__device__ float LogSigmoid(float x) { return fminf(x, 0.0f) - log1pf(expf(-fabsf(x))); }

__global__ void MlstmRecurrentKernel(MlstmParams p) {
  extern __shared__ float smem[];
  float* c_tile = smem;                       // [dqk, kTile]
  float* n_vec = c_tile + p.dqk * kTile;      // [dqk]
  float* q_vec = n_vec + p.dqk;               // [dqk]
  float* k_vec = q_vec + p.dqk;               // [dqk]
  __shared__ float scratch[32];

  const int seq = blockIdx.x, head = blockIdx.y, tile = blockIdx.z;
  const int j = tile * kTile + threadIdx.x;  // this thread's column of C
  const bool has_col = j < p.dv;
  float* head_state = p.states + int64_t(p.seq_slot[seq]) * p.slot_floats + p.layer_offset +
                      int64_t(head) * (int64_t(p.dqk) * p.dv + p.dqk + 1);
  float* c = head_state;
  float* n = head_state + int64_t(p.dqk) * p.dv;
  float* m_ptr = n + p.dqk;

  for (int i = 0; i < p.dqk; ++i) c_tile[i * kTile + threadIdx.x] = has_col ? c[int64_t(i) * p.dv + j] : 0.0f;
  for (int i = threadIdx.x; i < p.dqk; i += blockDim.x) n_vec[i] = n[i];
  float m = *m_ptr;
  const float scale = rsqrtf(static_cast<float>(p.dqk));
  const int qk_width = p.heads * p.dqk, v_width = p.heads * p.dv;

  for (int row = p.seq_row_begin[seq]; row < p.seq_row_begin[seq + 1]; ++row) {
    __syncthreads();
    for (int i = threadIdx.x; i < p.dqk; i += blockDim.x) {
      q_vec[i] = p.q[int64_t(row) * qk_width + head * p.dqk + i] * scale;
      k_vec[i] = p.k[int64_t(row) * qk_width + head * p.dqk + i];
    }
    __syncthreads();
    const float lf = LogSigmoid(p.fgate[int64_t(row) * p.heads + head]);
    const float ig = p.igate[int64_t(row) * p.heads + head];
    const float m_new = fmaxf(lf + m, ig);
    const float f = expf(lf + m - m_new);
    const float i_act = expf(ig - m_new);
    m = m_new;
    // n and q·n: each thread a strided share of i, then a block sum.
    float qn = 0;
    for (int i = threadIdx.x; i < p.dqk; i += blockDim.x) {
      const float nv = f * n_vec[i] + i_act * k_vec[i];
      n_vec[i] = nv;
      qn += q_vec[i] * nv;
    }
    qn = BlockSum(qn, scratch);
    const float vj = has_col ? p.v[int64_t(row) * v_width + head * p.dv + j] : 0.0f;
    float num = 0;
    for (int i = 0; i < p.dqk; ++i) {
      const float cv = f * c_tile[i * kTile + threadIdx.x] + i_act * k_vec[i] * vj;
      c_tile[i * kTile + threadIdx.x] = cv;
      num += q_vec[i] * cv;
    }
    if (has_col) {
      const float denom = fmaxf(fabsf(qn), expf(-m)) + p.eps;
      p.h[int64_t(row) * v_width + head * p.dv + j] = num / denom;
    }
  }
  __syncthreads();
  if (has_col) {
    for (int i = 0; i < p.dqk; ++i) c[int64_t(i) * p.dv + j] = c_tile[i * kTile + threadIdx.x];
  }
  if (tile == 0) {
    for (int i = threadIdx.x; i < p.dqk; i += blockDim.x) n[i] = n_vec[i];
    if (threadIdx.x == 0) *m_ptr = m;
  }
}

}  // namespace

cudaError_t MlstmRecurrent(const MlstmParams& p, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  const size_t smem = (size_t(p.dqk) * kTile + 3 * size_t(p.dqk)) * sizeof(float);
  if (smem > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(MlstmRecurrentKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(p.num_seqs, p.heads, (p.dv + kTile - 1) / kTile);
  MlstmRecurrentKernel<<<grid, kTile, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
