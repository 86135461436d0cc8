// MlstmRecurrent: the mLSTM recurrence over any number of tokens per sequence (prefill and
// mixed batches), one token at a time, with C held in registers for the whole call.
//
// Maths (DESIGN §3), per sequence s, head h, for each of its rows t in order:
//   (m', f, i) = MlstmGates(ĩ_t, f̃_t, m);  C = f C + i k_t v_tᵀ;  n = f n + i k_t;  m = m'
//   h_t = (q̂_tᵀ C) / (max(|q̂_tᵀ n|, exp(-m)) + eps),   q̂ = q / sqrt(dqk)
// C is written back once at the end; n and m by MlstmNormalizer afterwards (each block here
// advances a private copy of n in shared memory; mlstm_common.cuh says why). A deferred
// sequence (speculative verify) writes h only; with h null (commit of deferred inputs) only
// the state is advanced: a rank-a update that reads and writes each C once.
// Shapes/layout as for MlstmStep (launchers.h): q, k, v, gates column slices of [rows,
// proj_stride]; h [rows, heads*dv]; state pool fp32 or bf16 (C kept in fp32 registers here).
// Launch: grid (num_seqs, heads, ceil(dv / kRegCols)), block kRegCols x kRegRowGroups threads. Warp w
// (= row group w) holds rows w, w + kRegRowGroups, ... of C; lane j holds column tile*kRegCols + j.
// Per chunk of kChunk tokens: stage their q̂, k, v (this tile's columns) and gates in shared
// memory. Per token: each thread updates its kRows values and its share of q̂ᵀC, the row
// groups' shares meet in shared memory (double-buffered by token parity) and warp 0 (which
// also advances n and q̂ᵀn) writes h. One barrier per token; no atomics: deterministic.
// Prefill takes the chunkwise form (mlstm_chunkwise.cu) where its shared memory allows; this
// kernel serves larger heads and the commit of deferred inputs when the tiled kernels do not.
#include <cuda_bf16.h>

#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_common.cuh"

namespace xlserve::kernels {
namespace {

// Tokens whose inputs are staged in shared memory at once: one round of global-memory latency
// per chunk instead of per token (32 KB of q̂ and k at dqk 512, under the 48 KB default).
constexpr int kChunk = 8;

template <typename T, int kRows>
__global__ void __launch_bounds__(kRegThreads) MlstmRecurrentKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  // Staging of one chunk: q̂ [kChunk, dqk], k [kChunk, dqk], v [kChunk, kRegCols], ĩ and f̃
  // [kChunk]; then n [dqk].
  extern __shared__ float smem[];
  float* q_s = smem;
  float* k_s = q_s + kChunk * p.dqk;
  float* v_s = k_s + kChunk * p.dqk;
  float* ig_s = v_s + kChunk * kRegCols;
  float* fg_s = ig_s + kChunk;
  float* n_s = fg_s + kChunk;
  __shared__ float part[2][kRegRowGroups][kRegCols];  // by token parity: one barrier per token

  const int seq = blockIdx.x, head = blockIdx.y, tile = blockIdx.z;
  const int lane = threadIdx.x % kRegCols, group = threadIdx.x / kRegCols;
  const int col = tile * kRegCols + lane;
  const bool has_col = col < p.dv;
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);

  float c[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = group + r * kRegRowGroups;
    c[r] = has_col && i < p.dqk ? ToFloat(st.c[int64_t(i) * p.dv + col]) : 0.0f;
  }
  for (int i = threadIdx.x; i < p.dqk; i += kRegThreads) n_s[i] = ToFloat(st.n[i]);
  float m = *st.m;
  const float scale = rsqrtf(static_cast<float>(p.dqk));
  const int end = SeqRowEnd(p, seq);

  for (int chunk = p.seq_row_begin[seq]; chunk < end; chunk += kChunk) {
    const int len = min(kChunk, end - chunk);
    __syncthreads();  // the previous chunk is done with the staging buffers
    for (int e = threadIdx.x; e < len * p.dqk; e += kRegThreads) {
      const int t = e / p.dqk, i = e % p.dqk;
      const int64_t at = int64_t(chunk + t) * p.proj_stride + int64_t(head) * p.dqk + i;
      q_s[e] = p.q[at] * scale;
      k_s[e] = p.k[at];
    }
    for (int e = threadIdx.x; e < len * kRegCols; e += kRegThreads) {
      const int t = e / kRegCols, j = tile * kRegCols + e % kRegCols;
      v_s[e] = j < p.dv ? p.v[int64_t(chunk + t) * p.proj_stride + int64_t(head) * p.dv + j] : 0.0f;
    }
    if (threadIdx.x < len) {
      ig_s[threadIdx.x] = p.igate[int64_t(chunk + threadIdx.x) * p.proj_stride + head];
      fg_s[threadIdx.x] = p.fgate[int64_t(chunk + threadIdx.x) * p.proj_stride + head];
    }
    __syncthreads();
    for (int t = 0; t < len; ++t) {
      const float* q = q_s + t * p.dqk;
      const float* k = k_s + t * p.dqk;
      const GateFactors g = MlstmGates(ig_s[t], fg_s[t], m, p.gate_cap);
      m = g.m;
      const float v = v_s[t * kRegCols + lane];
      float acc = 0;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int i = group + r * kRegRowGroups;
        if (i < p.dqk) {
          c[r] = g.f * c[r] + g.i * k[i] * v;
          acc += q[i] * c[r];
        }
      }
      part[t & 1][group][lane] = acc;
      float qn = 0;
      if (group == 0) {
        for (int i = lane; i < p.dqk; i += kRegCols) {
          const float n = g.f * n_s[i] + g.i * k[i];
          n_s[i] = n;
          qn += q[i] * n;
        }
        qn = WarpSum(qn);
      }
      __syncthreads();
      if (group == 0 && has_col && p.h != nullptr) {
        float num = 0;
#pragma unroll
        for (int r = 0; r < kRegRowGroups; ++r) num += part[t & 1][r][lane];
        p.h[int64_t(chunk + t) * p.heads * p.dv + int64_t(head) * p.dv + col] =
            num / (fmaxf(fabsf(qn), expf(-m)) + p.eps);
      }
    }
  }
  if (SeqDeferred(p, seq)) return;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = group + r * kRegRowGroups;
    if (has_col && i < p.dqk) st.c[int64_t(i) * p.dv + col] = FromFloat<T>(c[r]);
  }
}

template <typename T>
cudaError_t LaunchRecurrent(const MlstmParams& p, cudaStream_t stream) {
  const dim3 grid(p.num_seqs, p.heads, (p.dv + kRegCols - 1) / kRegCols);
  const size_t smem = (size_t(2 * kChunk + 1) * p.dqk + kChunk * kRegCols + 2 * kChunk) * sizeof(float);
  return LaunchByRegRows<2>(p.dqk, [&](auto rows) {
    LaunchDependent(MlstmRecurrentKernel<T, decltype(rows)::value>, grid, kRegThreads, smem, stream, p);
  });
}

}  // namespace

bool MlstmRecurrentSupports(int dqk) { return dqk <= kRegRowGroups * kRegMaxRows; }

cudaError_t MlstmRecurrent(const MlstmParams& p, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (!MlstmRecurrentSupports(p.dqk)) return cudaErrorInvalidValue;
  return LaunchByStateTypeThenNormalize(
      p, stream, [&](auto state) { return LaunchRecurrent<decltype(state)>(p, stream); });
}

}  // namespace xlserve::kernels
