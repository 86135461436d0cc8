// MlstmVerifyPrep: the per-(sequence, head) scalars of a speculative verify, computed once
// instead of in each of MlstmVerify's column tiles, so those tiles only stream C (DESIGN §4).
//
// Maths, per sequence s and head h (mlstm_verify.cu has the verify's, mlstm_commit.cu the
// commit's), with q̂ = q / sqrt(dqk) and MlstmGates' factors (m_t = max(lf_t + m_{t-1}, ĩ_t),
// f_t = e^{lf_t + m_{t-1} - m_t}, i_t = e^{ĩ_t - m_t}):
// 1. A pending commit of A rows (p.pend_k non-null): its factors a_A = Π f_u and
//    b_{As} = i_s Π_{s<u<=A} f_u, by CommitGateFactors as MlstmCommitKernel, and n, m advanced
//    over its rows, n_t = f_t n_{t-1} + i_t k_t in MlstmNormalizer's: n (as the state type) and m
//    are written to the state, so a fused commit leaves the bits of MlstmCommit + MlstmNormalizer.
//    All of it but the records' writes runs before the wait for the kernel ahead (PDL): its
//    inputs are the state and the pending rows, which no kernel of the pass writes earlier.
// 2. From that state (n as stored, m): per verified token t <= L the decay a_t = Π_{u<=t} f_u,
//    the weighted dots w_{ts} = b_{ts} q̂_t·k_s (s <= t), and the denominator
//    max(|a_t q̂_t·n0 + Σ_s w_{ts}|, e^{-m_t}) + eps.
// Output: the record of launchers.h's VerifyCoef at p.verify_coef + (s * heads + h) *
// kVerifyCoefStride. Inputs as MlstmVerify's; the pending rows from the store of deferred inputs.
// Launch: grid (num_seqs, heads), block kThreads; thread i owns n[i] (dqk <= kThreads). q̂ and k
// of the L rows sit in shared memory ([L, dqk] each, then n0 [dqk]); warp w takes the dots w,
// w + 8, ... (lane-strided sums, then a warp sum); one thread runs each short gate recurrence.
#include <cuda_bf16.h>

#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_common.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) MlstmVerifyPrepKernel(MlstmParams p) {
  AllowDependentLaunch();
  extern __shared__ float prep_smem[];  // q̂ [L, dqk], k [L, dqk], n0 [dqk]
  __shared__ float ig_s[kMaxVerifyTokens], fg_s[kMaxVerifyTokens];  // the verified rows' gates
  __shared__ float pend_f[kMaxVerifyTokens], pend_i[kMaxVerifyTokens];
  __shared__ float dots[kMaxVerifyTokens][kMaxVerifyTokens + 1];  // q̂_t·k_s, and q̂_t·n0 at s = L
  __shared__ float m_committed;

  const int seq = blockIdx.x, head = blockIdx.y, tid = threadIdx.x;
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
  const int row0 = p.seq_row_begin[seq], len = SeqRowEnd(p, seq) - row0;
  const int pend_row0 = p.pend_k != nullptr ? p.pend_begin[seq] : 0;
  const int pend = p.pend_k != nullptr ? p.pend_end[seq] - pend_row0 : 0;
  float* q_s = prep_smem;
  float* k_s = q_s + len * p.dqk;
  float* n_s = k_s + len * p.dqk;
  float* coef = p.verify_coef + (int64_t(seq) * p.heads + head) * kVerifyCoefStride;

  // Every load first. The state and the pending rows before the wait for the kernel ahead: no
  // kernel of the pass writes them before this one (mlstm_step.cu says why); then the gates,
  // q̂ and k of the verified rows, which the projection ahead writes.
  float pend_ig = 0.0f, pend_fg = 0.0f;
  if (tid < pend) {
    const int64_t at = int64_t(pend_row0 + tid) * p.pend_stride + head;
    pend_ig = p.pend_igate[at];
    pend_fg = p.pend_fgate[at];
  }
  const float m_state = *st.m;
  const bool owns_n = tid < p.dqk;
  float n = owns_n ? ToFloat(st.n[tid]) : 0.0f;
  float pend_key[kMaxVerifyTokens];
#pragma unroll
  for (int t = 0; t < kMaxVerifyTokens; ++t) {
    pend_key[t] = owns_n && t < pend ? p.pend_k[int64_t(pend_row0 + t) * p.pend_stride + int64_t(head) * p.dqk + tid]
                                     : 0.0f;
  }

  // 1. The pending commit, still before the wait, so that its serial part runs while the kernel
  // ahead finishes: factors and m by one thread, n by every thread, into the state (which only
  // this layer's kernels of this pass touch, after this one). Its factors reach p.verify_coef
  // only after the wait: the records are shared by the layers, and an earlier layer's verify may
  // still read them until then.
  __shared__ float commit_weight_s[kMaxVerifyTokens];
  __shared__ float commit_decay_s;
  if (pend > 0) {
    // Gates to shared memory through the registers that loaded them (one row per thread).
    __shared__ float pend_ig_s[kMaxVerifyTokens], pend_fg_s[kMaxVerifyTokens];
    if (tid < pend) {
      pend_ig_s[tid] = pend_ig;
      pend_fg_s[tid] = pend_fg;
    }
    __syncthreads();
    if (tid == 0) {
      float m = m_state;
      commit_decay_s = CommitGateFactors(pend_ig_s, pend_fg_s, pend, p.gate_cap, m, commit_weight_s, pend_f, pend_i);
      *st.m = m;
      m_committed = m;
    }
    __syncthreads();
    if (owns_n) {
#pragma unroll
      for (int t = 0; t < kMaxVerifyTokens; ++t) {
        if (t < pend) n = pend_f[t] * n + pend_i[t] * pend_key[t];
      }
      const T stored = FromFloat<T>(n);
      st.n[tid] = stored;
      n_s[tid] = ToFloat(stored);
    }
  } else {
    if (owns_n) n_s[tid] = n;
    if (tid == 0) m_committed = m_state;
  }
  WaitForPriorKernels();
  if (pend > 0 && tid == 0) {  // the values this thread wrote itself
    coef[VerifyCoef::kCommitDecay] = commit_decay_s;
    for (int t = 0; t < pend; ++t) coef[VerifyCoef::kCommitWeight + t] = commit_weight_s[t];
  }
  if (tid < len) {
    const int64_t in_row = int64_t(row0 + tid) * p.proj_stride;
    ig_s[tid] = p.igate[in_row + head];
    fg_s[tid] = p.fgate[in_row + head];
  }
  const float scale = rsqrtf(static_cast<float>(p.dqk));
  // Thread i takes element i of each verified row's q̂ and k (dqk <= kThreads): no division.
  float q_r[kMaxVerifyTokens], k_r[kMaxVerifyTokens];
  const int64_t in0 = int64_t(row0) * p.proj_stride + int64_t(head) * p.dqk + tid;
#pragma unroll
  for (int t = 0; t < kMaxVerifyTokens; ++t) {
    const int64_t at = in0 + int64_t(t) * p.proj_stride;
    q_r[t] = owns_n && t < len ? p.q[at] : 0.0f;
    k_r[t] = owns_n && t < len ? p.k[at] : 0.0f;
  }
#pragma unroll
  for (int t = 0; t < kMaxVerifyTokens; ++t) {
    if (owns_n && t < len) {
      q_s[t * p.dqk + tid] = q_r[t] * scale;
      k_s[t * p.dqk + tid] = k_r[t];
    }
  }
  // The verified rows' k and gates, kept for their commit (MlstmVerify keeps v).
  if (p.keep_k != nullptr) {
    const int64_t keep0 = int64_t(p.keep_begin[seq]) * p.pend_stride;
#pragma unroll
    for (int t = 0; t < kMaxVerifyTokens; ++t) {
      if (owns_n && t < len) p.keep_k[keep0 + t * p.pend_stride + int64_t(head) * p.dqk + tid] = k_r[t];
    }
    if (tid < len) {
      p.keep_igate[keep0 + tid * p.pend_stride + head] = ig_s[tid];
      p.keep_fgate[keep0 + tid * p.pend_stride + head] = fg_s[tid];
    }
  }

  __syncthreads();

  // 2. The dots, then the verified rows' gate recurrence from the committed m.
  const int warp = tid / 32, lane = tid % 32;
  for (int dot = warp; dot < len * (len + 1); dot += kThreads / 32) {
    const int t = dot / (len + 1), s = dot % (len + 1);
    if (s < len && s > t) continue;
    const float* other = s < len ? k_s + s * p.dqk : n_s;
    float acc = 0;
    for (int i = lane; i < p.dqk; i += 32) acc += q_s[t * p.dqk + i] * other[i];
    acc = WarpSum(acc);
    if (lane == 0) dots[t][s] = acc;
  }
  __syncthreads();
  if (tid == 0) {
    // b_{ts} as running products: after token t, w[s] = b_{ts}.
    float m = m_committed, a = 1.0f, w[kMaxVerifyTokens];
    for (int t = 0; t < len; ++t) {
      const GateFactors g = MlstmGates(ig_s[t], fg_s[t], m, p.gate_cap);
      m = g.m;
      a *= g.f;
      float qn = a * dots[t][len];
      for (int s = 0; s <= t; ++s) {
        w[s] = s == t ? g.i : w[s] * g.f;
        const float wd = dots[t][s] * w[s];
        coef[VerifyCoef::kDots + t * kMaxVerifyTokens + s] = wd;
        qn += wd;
      }
      coef[VerifyCoef::kDecay + t] = a;
      coef[VerifyCoef::kDenom + t] = fmaxf(fabsf(qn), expf(-m)) + p.eps;
    }
  }
}

}  // namespace

cudaError_t MlstmVerifyPrep(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (p.verify_coef == nullptr || p.dqk > kThreads || max_tokens > kMaxVerifyTokens) return cudaErrorInvalidValue;
  // At most (2 x 8 + 1) x 256 floats: 17 KB, under the 48 KB default.
  const size_t smem = (2 * size_t(max_tokens) + 1) * p.dqk * sizeof(float);
  const dim3 grid(p.num_seqs, p.heads);
  if (p.state.type == StateType::kF32) {
    LaunchDependent(MlstmVerifyPrepKernel<float>, grid, kThreads, smem, stream, p);
  } else {
    LaunchDependent(MlstmVerifyPrepKernel<__nv_bfloat16>, grid, kThreads, smem, stream, p);
  }
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
