// MlstmNormalizer: the n and m half of the mLSTM recurrence (DESIGN §3), per sequence s and
// head h over the sequence's rows t:
//   m' = max(lf_t + m, ĩ_t);  n' = exp(lf_t + m - m') n + exp(ĩ_t - m') k_t
// (gates soft-capped as in MlstmGates), then n and m are written back to the slot; deferred
// sequences (speculative verify) are skipped.
// Launch: grid (num_seqs, heads), block kThreads; thread j owns n[j + kThreads * r] in
// registers for r < kPerThread (dqk <= kThreads * kPerThread). Every thread advances m itself.
// mlstm_common.cuh says why this is a kernel of its own.
#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_common.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kPerThread = 8;  // dqk <= 1024

template <typename T>
__global__ void __launch_bounds__(kThreads) MlstmNormalizerKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int seq = blockIdx.x, head = blockIdx.y;
  if (SeqDeferred(p, seq)) return;
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
  float n[kPerThread];
#pragma unroll
  for (int r = 0; r < kPerThread; ++r) {
    const int i = threadIdx.x + r * kThreads;
    n[r] = i < p.dqk ? ToFloat(st.n[i]) : 0.0f;
  }
  float m = *st.m;
  for (int row = p.seq_row_begin[seq], end = SeqRowEnd(p, seq); row < end; ++row) {
    const GateFactors g =
        MlstmGates(p.igate[int64_t(row) * p.proj_stride + head], p.fgate[int64_t(row) * p.proj_stride + head], m, p.gate_cap);
    m = g.m;
    const float* k = p.k + int64_t(row) * p.proj_stride + int64_t(head) * p.dqk;
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      const int i = threadIdx.x + r * kThreads;
      if (i < p.dqk) n[r] = g.f * n[r] + g.i * k[i];
    }
  }
#pragma unroll
  for (int r = 0; r < kPerThread; ++r) {
    const int i = threadIdx.x + r * kThreads;
    if (i < p.dqk) st.n[i] = FromFloat<T>(n[r]);
  }
  // Every warp read m before it is overwritten (a deferred sequence's whole block returned).
  __syncthreads();
  if (threadIdx.x == 0) *st.m = m;
}

}  // namespace

cudaError_t MlstmNormalizer(const MlstmParams& p, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (p.dqk > kThreads * kPerThread) return cudaErrorInvalidValue;
  const dim3 grid(p.num_seqs, p.heads);
  if (p.state.type == StateType::kF32) {
    LaunchDependent(MlstmNormalizerKernel<float>, grid, kThreads, 0, stream, p);
  } else {
    LaunchDependent(MlstmNormalizerKernel<__nv_bfloat16>, grid, kThreads, 0, stream, p);
  }
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
