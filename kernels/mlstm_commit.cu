// MlstmCommit: advances each sequence's committed state by its first A <= kMaxVerifyTokens
// deferred tokens as one update, reading and writing each C once (DESIGN §4, step 3).
//
// Maths, per sequence s and head h, with the gate factors and b_{As} of mlstm_verify.cu:
//   C_A = a_A C0 + Σ_{s<=A} b_{As} k_s v_sᵀ        (a rank-A update of the decayed state)
// C is written here; n and m by MlstmNormalizer afterwards (mlstm_common.cuh says why).
// Inputs: k, v, gates as column slices of rows [seq_row_begin[s], SeqRowEnd(s)) of a
// [*, proj_stride] fp32 buffer (the backend's store of deferred inputs); q and h unused.
// Launch: grid (num_seqs, heads, ceil(dv / kCols)), block kTileThreads, the tiling of
// mlstm_tile.cuh. Shared memory holds b_{As} k_s [A, dqk] and this tile's v_s [A, kCols]; each
// thread updates its rows of C in registers.
#include <cuda_bf16.h>

#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_common.cuh"
#include "kernels/mlstm_tile.cuh"

namespace xlserve::kernels {
namespace {

template <typename T, int kRows>
__global__ void __launch_bounds__(kTileThreads, 2) MlstmCommitKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  using S = TileShape<T>;
  extern __shared__ float wk_s[];  // b_{As} k_s [A, dqk]
  __shared__ float v_s[kMaxVerifyTokens][S::kCols];
  __shared__ float weight[kMaxVerifyTokens];
  __shared__ float ig_s[kMaxVerifyTokens], fg_s[kMaxVerifyTokens];
  __shared__ float decay;

  const int seq = blockIdx.x, head = blockIdx.y, tile = blockIdx.z;
  const int row0 = p.seq_row_begin[seq];
  const int len = SeqRowEnd(p, seq) - row0;
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
  const int cg = threadIdx.x % S::kGroups, rg = threadIdx.x / S::kGroups;
  const int col0 = tile * S::kCols + cg * S::kVec;
  const bool has_cols = col0 < p.dv;

  uint4 c[kRows];
  LoadTileRows<T, kRows>(st.c, p.dqk, p.dv, rg, col0, has_cols, c);
  // The gate pre-activations load in parallel; one thread then runs the short recurrence.
  if (threadIdx.x < len) {
    const int64_t in_row = int64_t(row0 + threadIdx.x) * p.proj_stride;
    ig_s[threadIdx.x] = p.igate[in_row + head];
    fg_s[threadIdx.x] = p.fgate[in_row + head];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = *st.m;
    decay = CommitGateFactors(ig_s, fg_s, len, p.gate_cap, m, weight);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < len * p.dqk; e += kTileThreads) {
    const int t = e / p.dqk, i = e % p.dqk;
    wk_s[e] = weight[t] * p.k[int64_t(row0 + t) * p.proj_stride + int64_t(head) * p.dqk + i];
  }
  for (int e = threadIdx.x; e < len * S::kCols; e += kTileThreads) {
    const int t = e / S::kCols, j = tile * S::kCols + e % S::kCols;
    v_s[t][e % S::kCols] = j < p.dv ? p.v[int64_t(row0 + t) * p.proj_stride + int64_t(head) * p.dv + j] : 0.0f;
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = rg + r * S::kRowGroups;
    if (has_cols && i < p.dqk) {
      float cf[S::kVec];
      Unpack(c[r], cf, T{});
#pragma unroll
      for (int e = 0; e < S::kVec; ++e) cf[e] = __fmul_rn(cf[e], decay);
      for (int t = 0; t < len; ++t) {
        const float wk = wk_s[t * p.dqk + i];
#pragma unroll
        for (int e = 0; e < S::kVec; ++e) cf[e] = __fmaf_rn(wk, v_s[t][cg * S::kVec + e], cf[e]);
      }
      *reinterpret_cast<uint4*>(st.c + int64_t(i) * p.dv + col0) = Pack(cf, T{});
    }
  }
}

template <typename T>
cudaError_t LaunchCommit(const MlstmParams& p, cudaStream_t stream) {
  using S = TileShape<T>;
  const dim3 grid(p.num_seqs, p.heads, S::Tiles(p.dv));
  const size_t smem = size_t(kMaxVerifyTokens) * p.dqk * sizeof(float);
  return LaunchByTileRows<T>(p.dqk, [&](auto rows) {
    LaunchDependent(MlstmCommitKernel<T, decltype(rows)::value>, grid, kTileThreads, smem, stream, p);
  });
}

}  // namespace

cudaError_t MlstmCommit(const MlstmParams& p, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (!MlstmStepSupports(p.dqk, p.dv, p.state.type)) return cudaErrorInvalidValue;
  return LaunchByStateTypeThenNormalize(
      p, stream, [&](auto state) { return LaunchCommit<decltype(state)>(p, stream); });
}

}  // namespace xlserve::kernels
