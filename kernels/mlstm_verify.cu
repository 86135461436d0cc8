// MlstmVerify: the outputs of L <= kMaxVerifyTokens tokens per sequence through one mLSTM layer
// from the committed state, which is read once and not written (speculative verify, DESIGN §4).
//
// Maths, per sequence s and head h, with q̂ = q / sqrt(dqk), C0, n0, m0 the committed state
// and per token t = 1..L the gate factors of MlstmGates (m_t = max(lf_t + m_{t-1}, ĩ_t),
// f_t = e^{lf_t + m_{t-1} - m_t}, i_t = e^{ĩ_t - m_t}), unrolled from C_t = f_t C_{t-1} + i_t k_t v_tᵀ:
//   a_t    = Π_{u<=t} f_u                       (decay of the committed state)
//   b_{ts} = i_s Π_{s<u<=t} f_u,  s <= t        (weight of token s's update at t)
//   h_t    = (a_t q̂_tᵀC0 + Σ_{s<=t} b_{ts} (q̂_t·k_s) v_sᵀ)
//            / (max(|a_t q̂_t·n0 + Σ_{s<=t} b_{ts} (q̂_t·k_s)|, e^{-m_t}) + eps)
// All factors lie in [0, 1]: the stabiliser keeps the products finite.
// Fused commit (MlstmParams::pend_*): a sequence whose previous verify was committed but not yet
// applied first advances C by those A rows, C0 <- a_A C0 + Σ_s b_{As} k_s v_sᵀ with the factors
// MlstmCommitFactors wrote (it has already advanced n and m), in mlstm_commit.cu's order of
// operations, and writes C back: one read and one write of the state per speculative step.
// Shapes/layout: q, k, v, gates are column slices of [rows, proj_stride] fp32; h [rows,
// heads*dv] fp32; the state pool of MlstmStateRef in fp32 or bf16.
// Launch: grid (num_seqs, heads, ceil(dv / kCols)), block kTileThreads, the tiling of
// mlstm_tile.cuh. Each thread streams its rows of C0 once and accumulates q̂_tᵀC0 for every t
// (kL x kVec registers); the row groups' partial sums meet in shared memory, one token at a
// time. The L x L dot products q̂_t·k_s and q̂_t·n0 are computed per block (a warp per dot).
#include <cuda_bf16.h>

#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_common.cuh"
#include "kernels/mlstm_tile.cuh"

namespace xlserve::kernels {
namespace {

template <typename T, int kRows, int kL>
__global__ void __launch_bounds__(kTileThreads, kL <= 4 ? 2 : 1) MlstmVerifyKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  using S = TileShape<T>;
  extern __shared__ float smem[];  // q̂ [L, dqk], k [L, dqk], then b_{As} k_s [A, dqk] of a fused commit
  float* q_s = smem;
  float* k_s = smem + kL * p.dqk;
  float* wk_p = k_s + kL * p.dqk;
  __shared__ float v_p[kMaxVerifyTokens][S::kCols];
  __shared__ float part[S::kRowGroups][S::kCols + 1];
  __shared__ float num_s[kL][S::kCols];
  __shared__ float qk[kL][kL];  // q̂_t·k_s, then b_{ts} q̂_t·k_s
  __shared__ float qn0[kL], decay[kL], denom[kL], ig_s[kL], fg_s[kL];

  const int seq = blockIdx.x, head = blockIdx.y, tile = blockIdx.z;
  const int row0 = p.seq_row_begin[seq];
  const int len = SeqRowEnd(p, seq) - row0;
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
  const int cg = threadIdx.x % S::kGroups, rg = threadIdx.x / S::kGroups;
  const int col0 = tile * S::kCols + cg * S::kVec;
  const bool has_cols = col0 < p.dv;

  // The loads of C0 go out first; the scalar work below hides their latency.
  uint4 c[kRows];
  LoadTileRows<T, kRows>(st.c, p.dqk, p.dv, rg, col0, has_cols, c);
  const int pend = p.pend_coef != nullptr ? p.pend_end[seq] - p.pend_begin[seq] : 0;
  const float* coef = p.pend_coef + (int64_t(seq) * p.heads + head) * kCommitFactorStride;
  for (int e = threadIdx.x; e < pend * p.dqk; e += kTileThreads) {
    const int t = e / p.dqk, i = e % p.dqk;
    wk_p[e] = coef[1 + t] * p.pend_k[int64_t(p.pend_begin[seq] + t) * p.pend_stride + int64_t(head) * p.dqk + i];
  }
  for (int e = threadIdx.x; e < pend * S::kCols; e += kTileThreads) {
    const int t = e / S::kCols, j = tile * S::kCols + e % S::kCols;
    v_p[t][e % S::kCols] =
        j < p.dv ? p.pend_v[int64_t(p.pend_begin[seq] + t) * p.pend_stride + int64_t(head) * p.dv + j] : 0.0f;
  }
  const float pend_decay = pend > 0 ? coef[0] : 1.0f;
  const float scale = rsqrtf(static_cast<float>(p.dqk));
  for (int e = threadIdx.x; e < len * p.dqk; e += kTileThreads) {
    const int t = e / p.dqk, i = e % p.dqk;
    const int64_t at = int64_t(row0 + t) * p.proj_stride + int64_t(head) * p.dqk + i;
    q_s[e] = p.q[at] * scale;
    k_s[e] = p.k[at];
  }
  if (threadIdx.x < len) {
    const int64_t in_row = int64_t(row0 + threadIdx.x) * p.proj_stride;
    ig_s[threadIdx.x] = p.igate[in_row + head];
    fg_s[threadIdx.x] = p.fgate[in_row + head];
  }
  __syncthreads();
  // Dots: (t, s) pairs with s <= t, then q̂_t·n0 as s = L; warp w takes dots w, w + 8, ...
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int dot = warp; dot < len * (len + 1); dot += kTileThreads / 32) {
    const int t = dot / (len + 1), s = dot % (len + 1);
    if (s < len && s > t) continue;
    float acc = 0;
    for (int i = lane; i < p.dqk; i += 32) acc += q_s[t * p.dqk + i] * (s < len ? k_s[s * p.dqk + i] : ToFloat(st.n[i]));
    acc = WarpSum(acc);
    if (lane == 0) {
      if (s < len) {
        qk[t][s] = acc;
      } else {
        qn0[t] = acc;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // Sequential gates; b_{ts} kept as running products: after token t, w[s] = b_{ts}.
    float m = *st.m, a = 1.0f, w[kL];
    for (int t = 0; t < len; ++t) {
      const GateFactors g = MlstmGates(ig_s[t], fg_s[t], m, p.gate_cap);
      m = g.m;
      a *= g.f;
      float qn = a * qn0[t];
      for (int s = 0; s <= t; ++s) {
        w[s] = s == t ? g.i : w[s] * g.f;
        qk[t][s] *= w[s];
        qn += qk[t][s];
      }
      decay[t] = a;
      denom[t] = fmaxf(fabsf(qn), expf(-m)) + p.eps;
    }
  }
  // (The first barrier of the reduction below publishes decay, denom and the weighted qk.)

  float acc[kL][S::kVec];
#pragma unroll
  for (int t = 0; t < kL; ++t) {
#pragma unroll
    for (int e = 0; e < S::kVec; ++e) acc[t][e] = 0;
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = rg + r * S::kRowGroups;
    if (has_cols && i < p.dqk) {
      float cf[S::kVec];
      Unpack(c[r], cf, T{});
      if (pend > 0) {
#pragma unroll
        for (int e = 0; e < S::kVec; ++e) cf[e] *= pend_decay;
        for (int t = 0; t < pend; ++t) {
          const float wk = wk_p[t * p.dqk + i];
#pragma unroll
          for (int e = 0; e < S::kVec; ++e) cf[e] += wk * v_p[t][cg * S::kVec + e];
        }
        // The verify reads the state as stored: the same rounding as after an unfused commit.
        const uint4 stored = Pack(cf, T{});
        *reinterpret_cast<uint4*>(st.c + int64_t(i) * p.dv + col0) = stored;
        Unpack(stored, cf, T{});
      }
#pragma unroll
      for (int t = 0; t < kL; ++t) {
        if (t < len) {
          const float q = q_s[t * p.dqk + i];
#pragma unroll
          for (int e = 0; e < S::kVec; ++e) acc[t][e] += q * cf[e];
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kL; ++t) {
    if (t >= len) break;
#pragma unroll
    for (int e = 0; e < S::kVec; ++e) part[rg][cg * S::kVec + e] = acc[t][e];
    __syncthreads();
    if (threadIdx.x < S::kCols) {
      float num = 0;
      for (int r = 0; r < S::kRowGroups; ++r) num += part[r][threadIdx.x];
      num_s[t][threadIdx.x] = num;
    }
    __syncthreads();
  }
  if (threadIdx.x < S::kCols) {
    const int col = tile * S::kCols + threadIdx.x;
    if (col < p.dv) {
      float v[kL];
      for (int s = 0; s < len; ++s) v[s] = p.v[int64_t(row0 + s) * p.proj_stride + int64_t(head) * p.dv + col];
      for (int t = 0; t < len; ++t) {
        float num = decay[t] * num_s[t][threadIdx.x];
        for (int s = 0; s <= t; ++s) num += qk[t][s] * v[s];
        p.h[int64_t(row0 + t) * p.heads * p.dv + int64_t(head) * p.dv + col] = num / denom[t];
      }
    }
  }
}

template <typename T, int kL>
cudaError_t LaunchVerify(const MlstmParams& p, cudaStream_t stream) {
  using S = TileShape<T>;
  const dim3 grid(p.num_seqs, p.heads, (p.dv + S::kCols - 1) / S::kCols);
  const size_t smem = (2 * size_t(kL) + (p.pend_coef != nullptr ? kMaxVerifyTokens : 0)) * p.dqk * sizeof(float);
  return LaunchByTileRows<T>(p.dqk, [&](auto rows) {
    LaunchDependent(MlstmVerifyKernel<T, decltype(rows)::value, kL>, grid, kTileThreads, smem, stream, p);
  });
}

}  // namespace

cudaError_t MlstmVerify(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (!MlstmStepSupports(p.dqk, p.dv, p.state.type) || max_tokens > kMaxVerifyTokens) return cudaErrorInvalidValue;
  // q̂ and k of 8 tokens at dqk 256 take 16 KB of shared memory: under the 48 KB default.
  if (p.state.type == StateType::kF32) {
    return max_tokens <= 4 ? LaunchVerify<float, 4>(p, stream) : LaunchVerify<float, kMaxVerifyTokens>(p, stream);
  }
  return max_tokens <= 4 ? LaunchVerify<__nv_bfloat16, 4>(p, stream)
                         : LaunchVerify<__nv_bfloat16, kMaxVerifyTokens>(p, stream);
}

}  // namespace xlserve::kernels
