// Tensor-core products for the chunkwise mLSTM kernels (mlstm_chunk_*.cu), in one of two
// precisions (Products): fp32-accurate 3xTF32 for the exact precision, or bf16 pairs (16
// mantissa bits, half the tensor-core work) for the bf16 precision on bf16 weights.
//
// 3xTF32: mma.sync m16n8k8 with TF32 operands keeps 10 mantissa bits, too few for the fp32 state
// maths. Each operand x is split into TF32 hi = rna(x) and lo = rna(x - hi), and a product is
// formed as lo·hi + hi·lo + hi·hi ("3xTF32", relative error ~2^-22; lo·lo is below that) into a
// zeroed tile per k8 step that is then added to the running fp32 sum with round-to-nearest: the
// tensor core's own accumulation truncates, and a truncated sum drifts one way over long
// reductions. (Cheaper variants were measured less accurate: hi by integer rounding with lo
// left to the tensor core's truncation, and one zeroed tile per 32-long slice, together moved
// a 300-token prefill's logits 6x further from the CPU's.)
//
// Fragment layouts (PTX ISA, m16n8k8 .tf32), g = lane / 4, t4 = lane % 4: A (16x8, row) a0 (g,
// t4), a1 (g+8, t4), a2 (g, t4+4), a3 (g+8, t4+4); B (8x8, col) b0 (t4, g), b1 (t4+4, g); C/D
// (16x8) c0 (g, 2 t4), c1 (g, 2 t4+1), c2 (g+8, 2 t4), c3 (g+8, 2 t4+1).
// Shared-memory strides that put a fragment's 32 lanes on distinct banks: an operand read as
// [row][k] (A, or B read transposed) wants a row stride ≡ 4 (mod 32); one read as [k][col]
// wants a stride ≡ 8 (mod 32).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/device_common.cuh"

namespace xlserve::kernels {

enum class Products { k3xTf32, kBf16Pair };

__device__ __forceinline__ void MmaTf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// An mma operand fragment of N values as TF32 (hi, lo) pairs: split once, used by every
// product that reads it.
template <int N>
struct Tf32Frag {
  uint32_t hi[N], lo[N];
};
__device__ __forceinline__ uint32_t ToTf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r & 0xffffe000u;  // the low 13 bits are not the value's: x - hi must see exactly hi
}
template <int N>
__device__ __forceinline__ Tf32Frag<N> SplitFrag(const float (&x)[N]) {
  Tf32Frag<N> f;
#pragma unroll
  for (int e = 0; e < N; ++e) {
    f.hi[e] = ToTf32(x[e]);
    f.lo[e] = ToTf32(x[e] - __uint_as_float(f.hi[e]));
  }
  return f;
}

// One warp's MT x NT tiles of m16n8 products over a 32-long slice of k (four k8 steps), added
// to d in 3xTF32 (one zeroed tile per k8 step, as above), with every address a constant offset
// from the lane's own base: a_lane points at the lane's first A element, (row g, k t4) of the
// warp's rows, read from [row][k] with row stride kAS or, with kAColMajor, from [k][row] with k
// stride kAS; b_lane at (k t4, column g) of [k][col] with k stride kBS or, with kBColMajor, of
// [col][k] with column stride kBS. Each A fragment is split once for its NT products and each B
// fragment once for its MT products; the products of all tiles go in turn, so that back-to-back
// mmas are independent.
template <int MT, int NT, int kAS, int kBS, bool kAColMajor, bool kBColMajor>
__device__ __forceinline__ void WarpTileSlice32Tf32x3(float (&d)[MT][NT][4], const float* a_lane,
                                                      const float* b_lane) {
  const auto a = [&](int m, int k) { return kAColMajor ? a_lane[k * kAS + m] : a_lane[m * kAS + k]; };
  const auto b = [&](int k, int n) { return kBColMajor ? b_lane[n * kBS + k] : b_lane[k * kBS + n]; };
#pragma unroll
  for (int k0 = 0; k0 < 32; k0 += 8) {
    Tf32Frag<4> fa[MT];
    Tf32Frag<2> fb[NT];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      fa[mt] = SplitFrag({a(16 * mt, k0), a(16 * mt + 8, k0), a(16 * mt, k0 + 4), a(16 * mt + 8, k0 + 4)});
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) fb[nt] = SplitFrag({b(k0, 8 * nt), b(k0 + 4, 8 * nt)});
    float t[MT][NT][4] = {};
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) MmaTf32(t[mt][nt], fa[mt].lo, fb[nt].hi);
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) MmaTf32(t[mt][nt], fa[mt].hi, fb[nt].lo);
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        MmaTf32(t[mt][nt], fa[mt].hi, fb[nt].hi);
#pragma unroll
        for (int e = 0; e < 4; ++e) d[mt][nt][e] += t[mt][nt][e];
      }
    }
  }
}

// bf16 pair (the bf16 precision): each operand x split into bf16 hi = rn(x) and lo = rn(x - hi),
// 16 mantissa bits together (the precision the exact GEMMs' activation pairs carry), and a
// product formed as lo·hi + hi·lo + hi·hi with mma.sync m16n8k16 (bf16 operands, fp32
// accumulation straight into d): three mmas per k16 step where 3xTF32 takes six, and one split
// per operand pair. Why: at 2,048 tokens the bf16 pairs gave TTFT 59.4 against 62.9 ms with
// 3xTF32 (H200, 7B shape, same call); 16 bits keep the state maths far from single TF32's 10,
// which moved the golden models' prefill logits by up to 0.28. Fragment layouts (PTX ISA,
// m16n8k16 .bf16): A regs 0..3 hold the pairs (g, 2 t4 + {0,1}), (g+8, same), (g, 2 t4 + 8 +
// {0,1}), (g+8, same), low index in the low half; B regs 0..1 hold (k 2 t4 + {0,1}, col g),
// (k 2 t4 + 8 + {0,1}, col g). A product sums over k in any order that A and B share, so the
// physical k 2 t4 + {0, 1, 8, 9} of lane t4 carries the logical k t4 + {0, 4, 8, 12}: the same
// constant offsets from the same lane bases as the TF32 fragments, and the same conflict-free
// strides.
__device__ __forceinline__ void MmaBf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// N registers of (x0, x1) pairs as packed bf16 hi and lo halves.
template <int N>
struct Bf16PairFrag {
  uint32_t hi[N], lo[N];
};
__device__ __forceinline__ void SplitBf16(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const float2 hf = __bfloat1622float2(h);
  const __nv_bfloat162 l = __floats2bfloat162_rn(x0 - hf.x, x1 - hf.y);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}
template <int MT, int NT, int kAS, int kBS, bool kAColMajor, bool kBColMajor>
__device__ __forceinline__ void WarpTileSlice32Bf16Pair(float (&d)[MT][NT][4], const float* a_lane,
                                                        const float* b_lane) {
  const auto a = [&](int m, int k) { return kAColMajor ? a_lane[k * kAS + m] : a_lane[m * kAS + k]; };
  const auto b = [&](int k, int n) { return kBColMajor ? b_lane[n * kBS + k] : b_lane[k * kBS + n]; };
#pragma unroll
  for (int k0 = 0; k0 < 32; k0 += 16) {
    Bf16PairFrag<4> fa[MT];
    Bf16PairFrag<2> fb[NT];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int m = 16 * mt + 8 * (r & 1), k = k0 + 8 * (r >> 1);
        SplitBf16(a(m, k), a(m, k + 4), fa[mt].hi[r], fa[mt].lo[r]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        SplitBf16(b(k0 + 8 * r, 8 * nt), b(k0 + 8 * r + 4, 8 * nt), fb[nt].hi[r], fb[nt].lo[r]);
      }
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) MmaBf16(d[mt][nt], fa[mt].lo, fb[nt].hi);
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) MmaBf16(d[mt][nt], fa[mt].hi, fb[nt].lo);
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) MmaBf16(d[mt][nt], fa[mt].hi, fb[nt].hi);
    }
  }
}

// One warp's MT x NT tiles over a 32-long slice of k, added to d in the precision kP; a_lane
// and b_lane as for WarpTileSlice32Tf32x3.
template <Products kP, int MT, int NT, int kAS, int kBS, bool kAColMajor, bool kBColMajor = false>
__device__ __forceinline__ void WarpTileSlice32(float (&d)[MT][NT][4], const float* a_lane, const float* b_lane) {
  if constexpr (kP == Products::kBf16Pair) {
    WarpTileSlice32Bf16Pair<MT, NT, kAS, kBS, kAColMajor, kBColMajor>(d, a_lane, b_lane);
  } else {
    WarpTileSlice32Tf32x3<MT, NT, kAS, kBS, kAColMajor, kBColMajor>(d, a_lane, b_lane);
  }
}

// Where element e of a lane's accumulator fragment lies in its 16 x 8 tile.
__device__ __forceinline__ int AccRow(int e) { return threadIdx.x % 32 / 4 + (e >= 2 ? 8 : 0); }
__device__ __forceinline__ int AccCol(int e) { return 2 * (threadIdx.x % 4) + (e & 1); }
// The same for m-tile mt / n-tile nt of a warp's tile of 16 x 8 tiles.
__device__ __forceinline__ int FragRow(int mt, int e) { return 16 * mt + AccRow(e); }
__device__ __forceinline__ int FragCol(int nt, int e) { return 8 * nt + AccCol(e); }

}  // namespace xlserve::kernels
