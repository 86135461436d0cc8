// The vectorised tiling of one head's C [dqk, dv] that the bandwidth-bound mLSTM kernels share
// (mlstm_step.cu, mlstm_verify.cu, mlstm_commit.cu): a block of kTileThreads threads owns
// TileShape<T>::kCols columns; thread t reads 16 bytes (kVec values) of the rows rg, rg +
// kRowGroups, ... (rg = t / kGroups), at most kTileMaxRows rows, so a warp covers two whole
// 256-byte row segments and each thread keeps up to kTileMaxRows x 16 bytes in flight.
#pragma once

#include <cuda_bf16.h>

#include <type_traits>

#include "kernels/launchers.h"

namespace xlserve::kernels {

constexpr int kTileThreads = 256;
// Rows per thread at most, so dqk <= 256: with 2 blocks per SM (launch bounds) 32 rows would
// spill; larger heads take the recurrent kernel.
constexpr int kTileMaxRows = 16;

// By default 16 column groups of 16 bytes: 256-byte row segments whatever the state type (bf16
// with 8 groups, 128-byte segments and half the rows per thread, reached only ~70% of the copy
// bandwidth at batch 128). Fewer groups make narrow tiles: more blocks with fewer rows each, for
// grids too small to fill the GPU (mlstm_verify.cu).
template <typename T, int kGroupCount = 16>
struct TileShape {
  static constexpr int kVec = 16 / sizeof(T);
  static constexpr int kGroups = kGroupCount;
  static constexpr int kCols = kGroups * kVec;
  static constexpr int kRowGroups = kTileThreads / kGroups;
  // Column tiles (blocks) of one head's C with dv columns.
  __host__ __device__ static constexpr int Tiles(int dv) { return (dv + kCols - 1) / kCols; }
};

__device__ __forceinline__ void Unpack(const uint4& raw, float* out, float) {
  const float* f = reinterpret_cast<const float*>(&raw);
#pragma unroll
  for (int e = 0; e < 4; ++e) out[e] = f[e];
}
__device__ __forceinline__ void Unpack(const uint4& raw, float* out, __nv_bfloat16) {
  const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 f = __bfloat1622float2(b[e]);
    out[2 * e] = f.x;
    out[2 * e + 1] = f.y;
  }
}
__device__ __forceinline__ uint4 Pack(const float* in, float) {
  uint4 raw;
  float* f = reinterpret_cast<float*>(&raw);
#pragma unroll
  for (int e = 0; e < 4; ++e) f[e] = in[e];
  return raw;
}
__device__ __forceinline__ uint4 Pack(const float* in, __nv_bfloat16) {
  uint4 raw;
  __nv_bfloat162* b = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int e = 0; e < 4; ++e) b[e] = __floats2bfloat162_rn(in[2 * e], in[2 * e + 1]);
  return raw;
}

// Issues the loads of this thread's rows of C (row group rg, columns from col0): kRows x 16
// bytes in flight before any of them is used.
template <typename T, int kRows>
__device__ __forceinline__ void LoadTileRows(const T* c, int dqk, int dv, int rg, int col0, bool has_cols,
                                             uint4 (&out)[kRows]) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = rg + r * TileShape<T>::kRowGroups;
    if (has_cols && i < dqk) out[r] = *reinterpret_cast<const uint4*>(c + int64_t(i) * dv + col0);
  }
}

// The same rows copied asynchronously (cp.async, no registers held) into this thread's slots of
// `staged` ([kRows][kTileThreads] 16-byte entries, entry r of thread t at r * kTileThreads + t),
// so a kernel can issue them before its prologue and overlap the two; WaitStagedRows() before
// reading. Only the issuing thread reads its entries, so no barrier is needed.
template <typename T, int kRows, int kGroups = 16>
__device__ __forceinline__ void StageTileRows(const T* c, int dqk, int dv, int rg, int col0, bool has_cols,
                                              uint4* staged) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = rg + r * TileShape<T, kGroups>::kRowGroups;
    if (has_cols && i < dqk) {
      const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(staged + r * kTileThreads + threadIdx.x));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(c + int64_t(i) * dv + col0));
    }
  }
  asm volatile("cp.async.commit_group;\n" ::);
}
__device__ __forceinline__ void WaitStagedRows() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// Calls launch(std::integral_constant<int, kRows>) with the fewest rows per thread of 1, 2, 4,
// 8, 16 that cover dqk (unused registers cost occupancy); cudaErrorInvalidValue when dqk is
// too large for the tiled kernels.
template <typename T, int kGroups = 16, typename Launch>
cudaError_t LaunchByTileRows(int dqk, Launch&& launch) {
  const int rows = (dqk + TileShape<T, kGroups>::kRowGroups - 1) / TileShape<T, kGroups>::kRowGroups;
  if (rows <= 1) {
    launch(std::integral_constant<int, 1>{});
  } else if (rows <= 2) {
    launch(std::integral_constant<int, 2>{});
  } else if (rows <= 4) {
    launch(std::integral_constant<int, 4>{});
  } else if (rows <= 8) {
    launch(std::integral_constant<int, 8>{});
  } else if (rows <= kTileMaxRows) {
    launch(std::integral_constant<int, kTileMaxRows>{});
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
