// What the chunkwise mLSTM kernels share (mlstm_chunk_prep.cu, mlstm_chunkwise.cu): the chunk
// and tile sizes, the per-(row, head) gate record that the gate scan leaves for the others, and
// the guarded four-value load that stages their operands.
#pragma once

#include <cuda_bf16.h>

#include <type_traits>

#include "kernels/chunk_mma.cuh"
#include "kernels/launchers.h"
#include "kernels/mlstm_common.cuh"

namespace xlserve::kernels {

constexpr int kChunk = kChunkTokens;              // tokens applied to C in one update
constexpr int kTile = 32;                         // tokens (and keys) of one output or score tile
constexpr int kTilesPerChunk = kChunk / kTile;
constexpr int kChunkThreads = 256;                // output and update blocks: 8 warps of 2 x 2 mma tiles
static_assert(kChunk % kTile == 0, "");

// The gate record of row r, head h at p.chunk_gates[(r * heads + h) * kChunkGateFields], with b
// the inclusive sum of log f over the row's chunk up to it, m_c the stabiliser before the chunk
// and L the chunk's last row (DESIGN §3):
enum ChunkGate {
  kGateB,          // b_t
  kGateIgMinusB,   // ĩ_t - b_t
  kGateM,          // m_t = b_t + max(m_c, max_{s <= t} (ĩ_s - b_s)); at L, the stabiliser after it
  kGateA,          // a_t = exp(b_t + m_c - m_t): the weight of the chunk's initial state in h_t
  kGateE,          // e_t = exp(b_L - b_t + ĩ_t - m_L): the weight of k_t v_tᵀ in the next state
  kGateDecay,      // at the chunk's first row only: g = exp(b_L + m_c - m_L), the state's decay
};
static_assert(kGateDecay < kChunkGateFields, "");

// Four consecutive values src[0..3] as floats, those at or past `valid` as zero; one vector load
// when all four are there and aligned.
template <typename T>
__device__ __forceinline__ float4 Load4(const T* src, int valid) {
  if (valid >= 4 && reinterpret_cast<uintptr_t>(src) % (4 * sizeof(T)) == 0) {
    if constexpr (sizeof(T) == 4) {
      return __ldg(reinterpret_cast<const float4*>(src));
    } else {
      const uint2 raw = __ldg(reinterpret_cast<const uint2*>(src));
      const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
      const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
      return make_float4(lo.x, lo.y, hi.x, hi.y);
    }
  }
  float v[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) v[e] = e < valid ? ToFloat(src[e]) : 0.0f;
  return make_float4(v[0], v[1], v[2], v[3]);
}

// The same four values into shared memory at dst (16-byte aligned): by cp.async when all four
// are there and aligned, so no register holds them and every piece of a staging round is in
// flight together; otherwise through Load4. CommitStaged() then WaitStaged() and a barrier
// before any thread reads another's pieces.
__device__ __forceinline__ void Stage4(float* dst, const float* src, int valid) {
  if (valid >= 4 && reinterpret_cast<uintptr_t>(src) % 16 == 0) {
    const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
  } else {
    *reinterpret_cast<float4*>(dst) = Load4(src, valid);
  }
}
// Rows [0, rows) x columns [0, cols) of a row-major src (row stride src_stride) into dst (row
// stride dst_stride) by Stage4, cols a multiple of 4, the block's threads sharing the pieces;
// rows from valid_rows and columns from valid_cols on stage as zeros.
__device__ __forceinline__ void StageBlock(float* dst, int dst_stride, const float* src, int64_t src_stride, int rows,
                                           int cols, int valid_rows, int valid_cols) {
  const int per_row = cols / 4;
  for (int piece = threadIdx.x; piece < rows * per_row; piece += blockDim.x) {
    const int r = piece / per_row, c = 4 * (piece % per_row);
    Stage4(dst + r * dst_stride + c, src + r * src_stride + c, r < valid_rows ? valid_cols - c : 0);
  }
}
__device__ __forceinline__ void CommitStaged() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void WaitStaged() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// Sum (or maximum) of v over the lanes up to this one.
template <bool kMax>
__device__ __forceinline__ float WarpInclusiveScan(float v) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float up = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v = kMax ? fmaxf(v, up) : v + up;
  }
  return v;
}

// One chunk's gate scan, thread t taking row t (len rows live): b and the running maximum R_t of
// ĩ - b as warp scans plus the chunk's earlier warps' totals. Neither depends on the stabiliser
// m before the chunk, which only From(m) applies. With kChunks > 1 the block's warps scan
// kChunks consecutive chunks of kWarps warps each (row t % (32 kWarps) of chunk t / (32 kWarps),
// len that chunk's). Every warp of the block calls it (threads past len pass live = false); its
// shared memory is free again when it returns.
struct ChunkScan {
  float b, ig_minus_b, m_t;  // this thread's row
  float b_last, m_next;      // the chunk's last row: b, and the stabiliser after the chunk
};
struct GateScan {
  float b, ig_minus_b, run_max;  // this thread's row
  float b_last, max_last;        // the chunk's last row
  __device__ ChunkScan From(float m) const {
    return {b, ig_minus_b, b + fmaxf(m, run_max), b_last, b_last + fmaxf(m, max_last)};
  }
};
template <int kWarps, int kChunks = 1>
__device__ __forceinline__ GateScan ScanGates(LogGates lg, bool live, int len) {
  __shared__ float warp_b[kChunks * kWarps], warp_max[kChunks * kWarps], last[2 * kChunks];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int chunk = kChunks == 1 ? 0 : warp / kWarps, first = chunk * kWarps;
  float b = WarpInclusiveScan<false>(lg.lf);
  if (lane == 31) warp_b[warp] = b;
  __syncthreads();
  float carry = 0.0f;
  for (int w = first; w < warp; ++w) carry += warp_b[w];
  b += carry;
  const float ig_minus_b = live ? lg.ig - b : -INFINITY;
  float run_max = WarpInclusiveScan<true>(ig_minus_b);
  if (lane == 31) warp_max[warp] = run_max;
  __syncthreads();
  for (int w = first; w < warp; ++w) run_max = fmaxf(run_max, warp_max[w]);
  if (tid - 32 * first == len - 1) {
    last[2 * chunk] = b;
    last[2 * chunk + 1] = run_max;
  }
  __syncthreads();
  const GateScan sc{b, ig_minus_b, run_max, last[2 * chunk], last[2 * chunk + 1]};
  __syncthreads();  // warp_b, warp_max and last are rewritten by the next scan
  return sc;
}
template <int kWarps>
__device__ __forceinline__ ChunkScan ScanChunkGates(LogGates lg, bool live, int len, float m) {
  return ScanGates<kWarps>(lg, live, len).From(m);
}

// launch(T{}, std::integral_constant<Products, kP>{}) for p's state type T and products kP.
template <typename Launch>
cudaError_t LaunchByStateAndProducts(const MlstmParams& p, Launch&& launch) {
  using Bf16Pair = std::integral_constant<Products, Products::kBf16Pair>;
  using Tf32x3 = std::integral_constant<Products, Products::k3xTf32>;
  const bool f32 = p.state.type == StateType::kF32;
  if (p.bf16_products) return f32 ? launch(float{}, Bf16Pair{}) : launch(__nv_bfloat16{}, Bf16Pair{});
  return f32 ? launch(float{}, Tf32x3{}) : launch(__nv_bfloat16{}, Tf32x3{});
}

__device__ __forceinline__ float* GateRecord(const MlstmParams& p, int row, int head) {
  return p.chunk_gates + (int64_t(row) * p.heads + head) * kChunkGateFields;
}

// The gate records of every chunk of every sequence, then P_ts = (q̂_t · k_s) exp(b_t - b_s +
// ĩ_s - m_t) for s <= t in the same chunk (0 for s > t) into p.chunk_p[(t * heads + h) * kChunk
// + s - chunk start], for every key tile up to t's own (mlstm_chunk_prep.cu).
cudaError_t LaunchChunkPrep(const MlstmParams& p, int max_tokens, cudaStream_t stream);

}  // namespace xlserve::kernels
