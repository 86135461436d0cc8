// Shared pieces of the mLSTM kernels: addressing one head's state in the slot pool, fp32 <->
// state-type conversion, and the normaliser kernel that both the step and the recurrent
// kernels leave the n/m update to.
//
// Why n and m are advanced by a separate kernel: the C kernels split one head's columns
// across blocks, and every block needs q·n' for the denominator. If one of them wrote n' and
// m' back while another block of the same head had yet to read n and m, the second would read
// the new values. So the C kernels only read n and m (each block advances a private copy in
// the same arithmetic), and MlstmNormalizer, ordered after them (on their stream, or past one
// wave of the step on a side stream forked after it), writes them.
// The plain step is the exception where a head's blocks form one cluster: a cluster barrier
// orders their reads before the write (mlstm_step.cu).
#pragma once

#include <cuda_bf16.h>

#include <type_traits>

#include "kernels/device_common.cuh"
#include "kernels/launchers.h"

namespace xlserve::kernels {

// The block shape of the kernels that keep C in registers across many tokens
// (mlstm_recurrent.cu): kRegCols columns x kRegRowGroups warps, at most
// kRegMaxRows rows of C per thread (dqk <= 512).
constexpr int kRegCols = 32;
constexpr int kRegRowGroups = 8;
constexpr int kRegThreads = kRegCols * kRegRowGroups;
constexpr int kRegMaxRows = 64;

// Calls launch(std::integral_constant<int, kRows>) with the fewest rows per thread of kMinRows,
// 2 kMinRows, ..., kRegMaxRows that cover dqk (unused registers cost occupancy); then reports
// the launch's error. kMinRows is a power of two.
template <int kMinRows, typename Launch>
cudaError_t LaunchByRegRows(int dqk, Launch&& launch) {
  const int rows = (dqk + kRegRowGroups - 1) / kRegRowGroups;
  if constexpr (kMinRows < kRegMaxRows) {
    if (rows > kMinRows) return LaunchByRegRows<2 * kMinRows>(dqk, launch);
  }
  launch(std::integral_constant<int, kMinRows>{});
  return cudaGetLastError();
}

template <typename T>
struct HeadState {
  T* c;      // [dqk, dv] row-major
  T* n;      // [dqk]
  float* m;  // scalar
};

__device__ __forceinline__ float* HeadStabiliser(const MlstmStateRef& s, int slot, int head) {
  return s.m + int64_t(slot) * s.m_slot_stride + s.m_offset + head * s.m_head_stride;
}

template <typename T>
__device__ __forceinline__ HeadState<T> HeadStateOf(const MlstmStateRef& s, int slot, int head, int dqk, int dv) {
  T* base = static_cast<T*>(s.pool) + int64_t(slot) * s.slot_elems + s.c_offset + int64_t(head) * s.head_elems;
  return {base, base + int64_t(dqk) * dv, HeadStabiliser(s, slot, head)};
}

__device__ __forceinline__ int SeqRowEnd(const MlstmParams& p, int seq) {
  return p.seq_row_end ? p.seq_row_end[seq] : p.seq_row_begin[seq + 1];
}
__device__ __forceinline__ bool SeqDeferred(const MlstmParams& p, int seq) {
  return p.seq_defer != nullptr && p.seq_defer[seq] != 0;
}

// The factors of a commit of `len` <= kMaxVerifyTokens tokens (DESIGN §4), by one thread:
// weight[s] = b_{len,s} = i_s Π_{s<u<len} f_u, and the returned decay Π f_u, with m advanced from
// the stabiliser before the commit to the last token's; each token's f and i into f_out and
// i_out when given. The commit kernel and the verify prep's fused commit both take it, so a
// fused commit keeps the bits of a separate one.
__device__ __forceinline__ float CommitGateFactors(const float* ig, const float* fg, int len, float cap, float& m,
                                                   float* weight, float* f_out = nullptr, float* i_out = nullptr) {
  float decay = 1.0f;
  for (int t = 0; t < len; ++t) {
    const GateFactors g = MlstmGates(ig[t], fg[t], m, cap);
    m = g.m;
    decay *= g.f;
    for (int s = 0; s < t; ++s) weight[s] *= g.f;
    weight[t] = g.i;
    if (f_out != nullptr) {
      f_out[t] = g.f;
      i_out[t] = g.i;
    }
  }
  return decay;
}

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// launch(float{}) or launch(__nv_bfloat16{}) by the state's storage type.
template <typename Launch>
cudaError_t LaunchByStateType(const MlstmParams& p, Launch&& launch) {
  return p.state.type == StateType::kF32 ? launch(float{}) : launch(__nv_bfloat16{});
}

// The same, then, when that launched, MlstmNormalizer: the tail of every C kernel that leaves
// n and m to it.
template <typename Launch>
cudaError_t LaunchByStateTypeThenNormalize(const MlstmParams& p, cudaStream_t stream, Launch&& launch) {
  const cudaError_t e = LaunchByStateType(p, launch);
  if (e != cudaSuccess) return e;
  return MlstmNormalizer(p, stream);
}

}  // namespace xlserve::kernels
