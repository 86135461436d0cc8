// MlstmVerify: the outputs of L <= kMaxVerifyTokens tokens per sequence through one mLSTM layer
// from the committed state, which is read once and written only by a fused commit (speculative
// verify, DESIGN §4).
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
// applied first advances C by those A rows, C0 <- a_A C0 + Σ_s b_{As} k_s v_sᵀ, in
// mlstm_commit.cu's order of operations, and writes C back: one read and one write of the state
// per speculative step. MlstmVerifyPrep, launched before, has advanced n and m and left every
// per-(sequence, head) factor in p.verify_coef (a_A, b_{As}, a_t, the denominators and the
// weighted dots w_{ts} = b_{ts} q̂_t·k_s), so this kernel only streams C.
// Shapes/layout: q, k, v, gates are column slices of [rows, proj_stride] fp32; h [rows,
// heads*dv] fp32; the state pool of MlstmStateRef in fp32 or bf16.
// Launch: grid (ceil(dv / kCols), heads, num_seqs), block kTileThreads, the tiling of
// mlstm_tile.cuh: wide tiles (16 column groups, 16 rows of C per thread at the 7B shape), or
// narrower ones (8 groups and 8 rows, or 4 and 4: LaunchVerify) while the wide grid has no more
// blocks than the GPU has SMs: there each SM ran one block, and a thread's serial work over 16
// rows was the kernel's time (H200, 7B shape, B = 1: the verify stage of L = 4 took 0.61-0.64
// ms a pass narrow against 0.84-0.89 wide). The tiling fixes the order of the sums, so a sequence's bits depend on it,
// as the GEMMs' do on the row count. The verified rows' v go to the store of deferred inputs
// (MlstmParams::keep_v) for their commit. Each thread's rows of C0 are copied (cp.async) into
// shared memory before the small loads (q̂, the pending keys and values, the factors); it keeps
// the first pending rows' values of its columns in registers for the fused commit, and
// accumulates q̂_tᵀC0 for every t (kL x kVec registers). The row groups' partial sums then meet
// in the staging space, four tokens per barrier pair; the first kCols threads finish their
// column.
#include <cuda_bf16.h>

#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_common.cuh"
#include "kernels/mlstm_tile.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kReduceTokens = 4;  // tokens whose partial sums share the staging space at once
static_assert(kVerifyCoefStride <= kTileThreads, "a thread per factor");

// Bytes of the staging space: C's rows of every thread, or the partial sums if more.
template <typename T, int kRows, int kGroups>
__host__ __device__ constexpr size_t StageBytes() {
  using S = TileShape<T, kGroups>;
  const size_t rows = size_t(kRows) * kTileThreads * sizeof(uint4);
  const size_t sums = size_t(S::kRowGroups) * kReduceTokens * (S::kCols + 1) * sizeof(float);
  return rows > sums ? rows : sums;
}

template <typename T, int kRows, int kL, int kGroups>
__global__ void __launch_bounds__(kTileThreads, kL <= 4 ? 2 : 1) MlstmVerifyKernel(MlstmParams p) {
  AllowDependentLaunch();
  using S = TileShape<T, kGroups>;
  // C's rows [kRows][kTileThreads] (the partial sums [kRowGroups][kReduceTokens][kCols + 1]
  // once read), then q̂ [kL, dqk], then b_{As} k_s [A, dqk] of a fused commit.
  extern __shared__ uint4 verify_smem[];
  uint4* c_s = verify_smem;
  float* q_s = reinterpret_cast<float*>(reinterpret_cast<char*>(verify_smem) + StageBytes<T, kRows, kGroups>());
  float* wk_p = q_s + kL * p.dqk;
  __shared__ float v_p[kMaxVerifyTokens][S::kCols];
  __shared__ float num_s[kL][S::kCols];
  __shared__ float coef_s[kVerifyCoefStride];

  // Column tiles fastest: the blocks that share q̂ and the factors run side by side.
  const int seq = blockIdx.z, head = blockIdx.y, tile = blockIdx.x;
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
  const int cg = threadIdx.x % S::kGroups, rg = threadIdx.x / S::kGroups;
  const int col0 = tile * S::kCols + cg * S::kVec;
  const bool has_cols = col0 < p.dv;
  // Before the wait, as the step kernel's (mlstm_step.cu says why that is safe): only this
  // kernel writes a verified sequence's C in a pass.
  StageTileRows<T, kRows, kGroups>(st.c, p.dqk, p.dv, rg, col0, has_cols, c_s);
  WaitForPriorKernels();
  const int row0 = p.seq_row_begin[seq];
  const int len = SeqRowEnd(p, seq) - row0;

  // The small operands: every load of a thread issued before any of them is used. Thread i
  // takes element i of each token's q̂ and pending key (dqk <= kTileThreads), so no index needs
  // a division by dqk.
  const float* coef = p.verify_coef + (int64_t(seq) * p.heads + head) * kVerifyCoefStride;
  const int pend = p.pend_k != nullptr ? p.pend_end[seq] - p.pend_begin[seq] : 0;
  const float scale = rsqrtf(static_cast<float>(p.dqk));
  const bool owns_i = threadIdx.x < p.dqk;
  float coef_r = threadIdx.x < kVerifyCoefStride ? coef[threadIdx.x] : 0.0f;
  constexpr int kPendVLoads = (kMaxVerifyTokens * S::kCols + kTileThreads - 1) / kTileThreads;
  float q_r[kL], wk_r[kMaxVerifyTokens], v_r[kPendVLoads];
  const float* q_in = p.q + int64_t(row0) * p.proj_stride + int64_t(head) * p.dqk + threadIdx.x;
#pragma unroll
  for (int t = 0; t < kL; ++t) q_r[t] = owns_i && t < len ? q_in[int64_t(t) * p.proj_stride] : 0.0f;
  const float* k_pend =
      pend > 0 ? p.pend_k + int64_t(p.pend_begin[seq]) * p.pend_stride + int64_t(head) * p.dqk + threadIdx.x : nullptr;
#pragma unroll
  for (int t = 0; t < kMaxVerifyTokens; ++t) {
    wk_r[t] = owns_i && t < pend ? coef[VerifyCoef::kCommitWeight + t] * k_pend[int64_t(t) * p.pend_stride] : 0.0f;
  }
#pragma unroll
  for (int j = 0; j < kPendVLoads; ++j) {
    const int e = threadIdx.x + j * kTileThreads, t = e / S::kCols, col = tile * S::kCols + e % S::kCols;
    v_r[j] = e < pend * S::kCols && col < p.dv
                 ? p.pend_v[int64_t(p.pend_begin[seq] + t) * p.pend_stride + int64_t(head) * p.dv + col]
                 : 0.0f;
  }
  if (threadIdx.x < kVerifyCoefStride) coef_s[threadIdx.x] = coef_r;
#pragma unroll
  for (int t = 0; t < kL; ++t) {
    if (owns_i && t < len) q_s[t * p.dqk + threadIdx.x] = q_r[t] * scale;
  }
#pragma unroll
  for (int t = 0; t < kMaxVerifyTokens; ++t) {
    if (owns_i && t < pend) wk_p[t * p.dqk + threadIdx.x] = wk_r[t];
  }
#pragma unroll
  for (int j = 0; j < kPendVLoads; ++j) {
    const int e = threadIdx.x + j * kTileThreads;
    if (e < pend * S::kCols) v_p[e / S::kCols][e % S::kCols] = v_r[j];
  }
  // The verified rows' v of this thread's output column, in flight during the products.
  const int out_col = tile * S::kCols + threadIdx.x;
  const bool writes_out = threadIdx.x < S::kCols && out_col < p.dv;
  float v_out[kL];
#pragma unroll
  for (int s = 0; s < kL; ++s) {
    v_out[s] = writes_out && s < len ? p.v[int64_t(row0 + s) * p.proj_stride + int64_t(head) * p.dv + out_col] : 0.0f;
  }
  WaitStagedRows();
  __syncthreads();

  const float pend_decay = pend > 0 ? coef_s[VerifyCoef::kCommitDecay] : 1.0f;
  // The first kPendRegs pending values of this thread's columns, in registers: read from shared
  // memory at every row instead, 4 column groups of a warp share a bank (verify + commit of L = 4
  // at batch 32 took 1.51x a decode step, 1.46x from registers). More would cost the kL = 8
  // variant more than it saves.
  constexpr int kPendRegs = kL < 4 ? kL : 4;
  float v_c[kPendRegs][S::kVec];
#pragma unroll
  for (int t = 0; t < kPendRegs; ++t) {
#pragma unroll
    for (int e = 0; e < S::kVec; ++e) v_c[t][e] = t < pend ? v_p[t][cg * S::kVec + e] : 0.0f;
  }
  float acc[kL][S::kVec];
#pragma unroll
  for (int t = 0; t < kL; ++t) {
#pragma unroll
    for (int e = 0; e < S::kVec; ++e) acc[t][e] = 0;
  }
  // Rolled: unrolled over its 16 rows at the 7B shape, this loop made the kernel ~6,000
  // instructions that a few warps each ran once, so at small batches it waited on instruction
  // fetch (ncu, B = 1: "no instruction" the largest stall). Rolled, verify + commit of L = 4 took
  // 1.24-1.27x a decode step at B = 1 against 1.37x, and 1.36x against 1.45x at B = 32 (H200).
#pragma unroll 1
  for (int r = 0; r < kRows; ++r) {
    const int i = rg + r * S::kRowGroups;
    if (has_cols && i < p.dqk) {
      float cf[S::kVec];
      Unpack(c_s[r * kTileThreads + threadIdx.x], cf, T{});
      if (pend > 0) {
        // mlstm_commit.cu's operations, rounded one by one (no multiply fused with another's add).
#pragma unroll
        for (int e = 0; e < S::kVec; ++e) cf[e] = __fmul_rn(cf[e], pend_decay);
#pragma unroll
        for (int t = 0; t < kPendRegs; ++t) {
          if (t < pend) {
            const float wk = wk_p[t * p.dqk + i];
#pragma unroll
            for (int e = 0; e < S::kVec; ++e) cf[e] = __fmaf_rn(wk, v_c[t][e], cf[e]);
          }
        }
        for (int t = kPendRegs; t < pend; ++t) {
          const float wk = wk_p[t * p.dqk + i];
#pragma unroll
          for (int e = 0; e < S::kVec; ++e) cf[e] = __fmaf_rn(wk, v_p[t][cg * S::kVec + e], cf[e]);
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
  // The row groups' sums, kReduceTokens tokens at a time, in the staging space (all of C read).
  float* part = reinterpret_cast<float*>(verify_smem);
  const auto part_at = [&](int r, int t, int col) { return (r * kReduceTokens + t) * (S::kCols + 1) + col; };
#pragma unroll
  for (int t0 = 0; t0 < kL; t0 += kReduceTokens) {
    if (t0 >= len) break;
    __syncthreads();
#pragma unroll
    for (int t = 0; t < kReduceTokens; ++t) {
#pragma unroll
      for (int e = 0; e < S::kVec; ++e) part[part_at(rg, t, cg * S::kVec + e)] = acc[t0 + t][e];
    }
    __syncthreads();
    for (int o = threadIdx.x; o < kReduceTokens * S::kCols; o += kTileThreads) {
      const int t = o / S::kCols, col = o % S::kCols;
      if (t0 + t >= len) continue;
      float num = 0;
      for (int r = 0; r < S::kRowGroups; ++r) num += part[part_at(r, t, col)];
      num_s[t0 + t][col] = num;
    }
  }
  __syncthreads();
  if (writes_out) {
#pragma unroll
    for (int t = 0; t < kL; ++t) {
      if (t >= len) break;
      float num = coef_s[VerifyCoef::kDecay + t] * num_s[t][threadIdx.x];
#pragma unroll
      for (int s = 0; s <= t; ++s) num += coef_s[VerifyCoef::kDots + t * kMaxVerifyTokens + s] * v_out[s];
      p.h[int64_t(row0 + t) * p.heads * p.dv + int64_t(head) * p.dv + out_col] = num / coef_s[VerifyCoef::kDenom + t];
    }
    // The verified rows' v, kept for their commit (MlstmVerifyPrep keeps k and the gates).
    if (p.keep_v != nullptr) {
      const int64_t keep0 = int64_t(p.keep_begin[seq]) * p.pend_stride + int64_t(head) * p.dv + out_col;
#pragma unroll
      for (int t = 0; t < kL; ++t) {
        if (t < len) p.keep_v[keep0 + t * p.pend_stride] = v_out[t];
      }
    }
  }
}

template <typename T, int kL, int kGroups>
cudaError_t LaunchVerifyTiles(const MlstmParams& p, cudaStream_t stream) {
  using S = TileShape<T, kGroups>;
  const dim3 grid(S::Tiles(p.dv), p.heads, p.num_seqs);
  cudaError_t allowed = cudaSuccess;
  const cudaError_t launched = LaunchByTileRows<T, kGroups>(p.dqk, [&](auto rows) {
    constexpr int kRows = decltype(rows)::value;
    const size_t smem = StageBytes<T, kRows, kGroups>() +
                        (size_t(kL) + (p.pend_k != nullptr ? kMaxVerifyTokens : 0)) * p.dqk * sizeof(float);
    allowed = AllowDynamicSmem<MlstmVerifyKernel<T, kRows, kL, kGroups>>(smem);
    if (allowed == cudaSuccess) {
      LaunchDependent(MlstmVerifyKernel<T, kRows, kL, kGroups>, grid, kTileThreads, smem, stream, p);
    }
  });
  return allowed != cudaSuccess ? allowed : launched;
}

// The widest tiles whose grid still gives every SM a block: wide ones (16 column groups) when
// they alone do, else 8 groups (half the rows a thread), else 4 (a quarter). Why 8 before 4: at
// the 7B shape and batch 4, 4-group tiles made 512 blocks, two waves at two blocks an SM, and
// verify + commit of L = 4 took 1.18x a plain step on the H200 against 1.09x at batch 2, whose
// 256 blocks were one wave; 8 groups make 256 blocks there.
template <typename T, int kL>
cudaError_t LaunchVerify(const MlstmParams& p, cudaStream_t stream) {
  const int64_t sms = DeviceSmCount(), sequence_heads = int64_t(p.heads) * p.num_seqs;
  if (TileShape<T>::Tiles(p.dv) * sequence_heads > sms) return LaunchVerifyTiles<T, kL, 16>(p, stream);
  if (TileShape<T, 8>::Tiles(p.dv) * sequence_heads >= sms) return LaunchVerifyTiles<T, kL, 8>(p, stream);
  return LaunchVerifyTiles<T, kL, 4>(p, stream);
}

}  // namespace

cudaError_t MlstmVerify(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (!MlstmStepSupports(p.dqk, p.dv, p.state.type) || max_tokens > kMaxVerifyTokens || p.verify_coef == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (p.state.type == StateType::kF32) {
    return max_tokens <= 4 ? LaunchVerify<float, 4>(p, stream) : LaunchVerify<float, kMaxVerifyTokens>(p, stream);
  }
  return max_tokens <= 4 ? LaunchVerify<__nv_bfloat16, 4>(p, stream)
                         : LaunchVerify<__nv_bfloat16, kMaxVerifyTokens>(p, stream);
}

}  // namespace xlserve::kernels
