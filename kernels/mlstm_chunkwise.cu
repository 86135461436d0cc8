// MlstmChunkwise: the mLSTM recurrence over a prefill (many tokens per sequence) in its chunkwise
// form: chunks of kChunk tokens, each applied as matrix products on the tensor cores instead of
// one token at a time.
//
// Maths (DESIGN §3). Per sequence and head, a chunk starts from the state (C, n, m) left by the
// previous one. With the chunk's log gates (soft-capped ĩ_t, lf_t = logsigmoid(f̃_t)) and
// b_t = Σ_{u ≤ t} lf_u (inclusive, within the chunk):
//   m_t = b_t + max(m, max_{s ≤ t} (ĩ_s - b_s))          (the recurrent stabiliser, unrolled)
//   a_t = exp(b_t + m - m_t),   D_ts = exp(b_t - b_s + ĩ_s - m_t) for s ≤ t, else 0
//   P_ts = (q̂_t · k_s) D_ts,    q̂ = q / sqrt(dqk)
//   h_t = (a_t q̂_tᵀ C + Σ_s P_ts v_s) / (max(|a_t q̂_t · n + Σ_s P_ts|, exp(-m_t)) + eps)
// and the state after the chunk's last token L:
//   C' = g C + Σ_s e_s k_s v_sᵀ,  n' = g n + Σ_s e_s k_s,  m' = m_L,
//   g = exp(b_L + m - m_L),  e_s = exp(b_L - b_s + ĩ_s - m_L).
// This equals the recurrent form (mlstm_recurrent.cu) up to rounding.
//
// Tensor cores: the three products with a dqk-long or chunk-long sum, Q̂ Kᵀ (scores), Q̂ C
// (inter-chunk) and Kᵀ diag(e) V (the state update), run as mma.sync m16n8k8 TF32, each
// operand split into a TF32 hi part and a TF32 lo part (x - hi) and the product formed as
// lo·hi + hi·lo + hi·hi ("3xTF32") into a zeroed tile that is added to the running sum in fp32
// with round-to-nearest (the tensor core's own accumulation truncates, and a truncated C drifts
// over a prompt): ~fp32 accuracy, which the fp32 state maths needs (plain TF32 keeps 10
// mantissa bits). Fragment layouts (PTX ISA, m16n8k8 .tf32),
// with g = lane / 4 and t4 = lane % 4: A (16x8, row) a0 (g, t4), a1 (g+8, t4), a2 (g, t4+4),
// a3 (g+8, t4+4); B (8x8, col) b0 (t4, g), b1 (t4+4, g); C/D (16x8) c0 (g, 2 t4), c1 (g,
// 2 t4+1), c2 (g+8, 2 t4), c3 (g+8, 2 t4+1).
// C lives in registers as the accumulators of the update, transposed: Cᵀ [dv, dqk] tiles of
// 16 (columns j of C) x 8 (rows i). The inter-chunk product Q̂ C (M = tokens, N = j, K = i)
// reads them as its B operand without any shuffle: a k8 block of B needs C[i][j] for two
// values of i per thread, and the accumulator holds C[2 t4][g] and C[2 t4 + 1][g], so the K
// index κ = t4 maps to i = 2 t4 and κ = t4 + 4 to i = 2 t4 + 1, and Q̂'s A fragment is read
// with the same permutation (a sum's order over k does not change its terms).
//
// Shapes/layout as for MlstmRecurrent (launchers.h): q, k, v, gates column slices of [rows,
// proj_stride] fp32; h [rows, heads*dv]; state pool fp32 or bf16, C held in fp32 registers.
// Launch: MlstmChunkScoresKernel first, all chunks in parallel: P's dot products q̂_t · k_s
// within each chunk (they do not depend on the state) into p.chunk_scores; grid (num_seqs,
// heads, chunks of the longest sequence), 8 warps, warp w the 16x8 tile (w / 4, w % 4) of the
// 32x32 scores. Then MlstmChunkwiseKernel, grid (num_seqs, heads, ceil(dv / kRegCols)), 8
// warps walking the chunks in order: a block owns kRegCols = 32 columns of one head's C; warp
// w holds the columns 16 (w % 2) .. +15 of them over the rows i of quarter w / 2 of dqk
// (kIBlocks blocks of 8 rows, dqk <= 32 kIBlocks). Per chunk, double-buffered with cp.async
// (the next chunk's copies fly during this one): q, k ([kChunk, dqk + 8]), v (this tile's
// columns, [kChunk, kVStride]), the gates and the chunk's scores in shared memory; warp 0
// scans the gates (sums and maxima over its lanes = tokens); P from the scores and q̂·n per
// warp; each warp forms its quarter's share of Q̂ C for all 32 tokens (reduced over the
// quarters in shared memory), then h (fp32 FMAs: P V is 32 x 32 per column), then the
// rank-kChunk update of its C tiles. Four barriers per chunk. Strides of q, k (dqk + 8), v (40) and the partial sums
// (40) put the fragments' 32 lanes on distinct banks. Tile 0 of each head writes n' and m'
// to p.chunk_nm; MlstmChunkStoreNm copies them into the slot after the kernel, since the other
// tiles read n and m at their start. Fp32 accumulation throughout; no atomics.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_common.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kChunk = kChunkTokens;  // warp 0's lanes in the gate scan: at most 32
static_assert(kChunk == 32 && kRegCols == 32 && kRegThreads == 256, "the warp layout below assumes these");
constexpr int kQuarters = 4;    // row quarters of dqk, one per pair of warps
constexpr int kVStride = 40;    // row stride of the staged v and of the partial sums
constexpr int kQkPad = 8;       // q and k rows: dqk + 8 floats

// One chunk's inputs as staged (cp.async, double-buffered): q (unscaled) and k [kChunk][dqk + 8],
// v [kChunk][kVStride] (kRegCols used), raw ĩ and f̃ [kChunk] each, and the scores [kChunk][kChunk].
struct Staged {
  float* q;
  float* k;
  float* v;
  float* raw_i;
  float* raw_f;
  float* scores;
};
__host__ __device__ inline int QkStride(int dqk) { return dqk + kQkPad; }
__host__ __device__ inline size_t StagedFloats(int dqk) {
  return size_t(2) * kChunk * QkStride(dqk) + kChunk * kVStride + 2 * kChunk + kChunk * kChunk;
}

// Buffer `buf` (0 or 1) of the two at the start of shared memory.
__device__ __forceinline__ Staged StagedAt(float* base, int dqk, int buf) {
  Staged in;
  in.q = base + buf * StagedFloats(dqk);
  in.k = in.q + kChunk * QkStride(dqk);
  in.v = in.k + kChunk * QkStride(dqk);
  in.raw_i = in.v + kChunk * kVStride;
  in.raw_f = in.raw_i + kChunk;
  in.scores = in.raw_f + kChunk;
  return in;
}

struct ChunkSmem {
  float* n;        // [dqk]
  float* p;        // [kChunk][kChunk + 2]: P_ts for s < kChunk, then q̂_t · n at s = kChunk
  float* part;     // [kQuarters][kChunk][kVStride]: the row quarters' shares of q̂_tᵀC
  float* gate;     // [kGateRows][kChunk]
  float* decay;    // [1]: g, the decay of the state over the chunk
};

enum { kA, kM, kE, kIgMinusB, kB, kGateRows };

__host__ __device__ inline size_t ChunkSmemFloats(int dqk) {
  return 2 * StagedFloats(dqk) + dqk + kChunk * (kChunk + 2) + size_t(kQuarters) * kChunk * kVStride +
         kGateRows * kChunk + 1;
}

__device__ ChunkSmem CarveSmem(float* base, int dqk) {
  ChunkSmem s;
  s.n = base + 2 * StagedFloats(dqk);
  s.p = s.n + dqk;
  s.part = s.p + kChunk * (kChunk + 2);
  s.gate = s.part + kQuarters * kChunk * kVStride;
  s.decay = s.gate + kGateRows * kChunk;
  return s;
}

__device__ __forceinline__ void CopyAsync4(float* dst, const float* src) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(src));
}
__device__ __forceinline__ void CopyAsync16(float* dst, const float* src) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
}

// Whether q and k rows can be copied 16 bytes at a time (every row start 16-byte aligned).
__host__ __device__ inline bool QkVectorCopies(const MlstmParams& p) {
  return p.proj_stride % 4 == 0 && Aligned16(p.q) && Aligned16(p.k);
}

// Issues the copies of the head's q and k rows of tokens chunk .. chunk + len - 1 into q_s and
// k_s (row stride qs, a multiple of 4): warp w takes rows w, w + 8, ..., its lanes the row's 16-
// or 4-byte pieces, so no index needs a division.
__device__ __forceinline__ void StageQk(const MlstmParams& p, int head, int chunk, int len, int qs, float* q_s,
                                        float* k_s) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool vec = QkVectorCopies(p);
  for (int t = warp; t < len; t += kRegThreads / 32) {
    const int64_t at = int64_t(chunk + t) * p.proj_stride + int64_t(head) * p.dqk;
    if (vec) {
      for (int i = 4 * lane; i < p.dqk; i += 4 * 32) {
        CopyAsync16(q_s + t * qs + i, p.q + at + i);
        CopyAsync16(k_s + t * qs + i, p.k + at + i);
      }
    } else {
      for (int i = lane; i < p.dqk; i += 32) {
        CopyAsync4(q_s + t * qs + i, p.q + at + i);
        CopyAsync4(k_s + t * qs + i, p.k + at + i);
      }
    }
  }
}

// An fp32 value as the TF32 pair (hi, lo) with hi + lo ≈ x to ~2^-22 relative.
struct Tf32Pair {
  uint32_t hi, lo;
};
__device__ __forceinline__ uint32_t ToTf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r & 0xffffe000u;  // the low 13 bits are not the value's: x - hi must see exactly hi
}
__device__ __forceinline__ Tf32Pair SplitTf32(float x) {
  const uint32_t hi = ToTf32(x);
  return {hi, ToTf32(x - __uint_as_float(hi))};
}

__device__ __forceinline__ void MmaTf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
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
template <int N>
__device__ __forceinline__ Tf32Frag<N> SplitFrag(const float (&x)[N]) {
  Tf32Frag<N> f;
#pragma unroll
  for (int e = 0; e < N; ++e) {
    const Tf32Pair s = SplitTf32(x[e]);
    f.hi[e] = s.hi;
    f.lo[e] = s.lo;
  }
  return f;
}

// d += a b in 3xTF32: the small cross terms first, then hi·hi, into a zeroed tile that is then
// added to d in fp32 (round to nearest): the tensor core's own accumulation truncates, which
// over a long sum (dqk terms; C over a whole prompt) drifts one way.
__device__ __forceinline__ void Mma3xTf32(float (&d)[4], const Tf32Frag<4>& a, const Tf32Frag<2>& b) {
  float t[4] = {0, 0, 0, 0};
  MmaTf32(t, a.lo, b.hi);
  MmaTf32(t, a.hi, b.lo);
  MmaTf32(t, a.hi, b.hi);
#pragma unroll
  for (int e = 0; e < 4; ++e) d[e] += t[e];
}

// Issues the copies of the chunk of `len` rows from `chunk` into `in` as one commit group
// (empty when len is 0), so that waiting for all but the newest group finds the older done.
__device__ void StageChunk(const MlstmParams& p, int head, int tile, int chunk, int len, const Staged& in) {
  StageQk(p, head, chunk, len, QkStride(p.dqk), in.q, in.k);
  for (int e = threadIdx.x; e < len * kRegCols; e += kRegThreads) {
    const int t = e / kRegCols, c = e % kRegCols, j = tile * kRegCols + c;
    if (j < p.dv) {
      CopyAsync4(in.v + t * kVStride + c, p.v + int64_t(chunk + t) * p.proj_stride + int64_t(head) * p.dv + j);
    } else {
      in.v[t * kVStride + c] = 0.0f;
    }
  }
  for (int e = threadIdx.x; e < len * kChunk; e += kRegThreads) {
    const int t = e / kChunk, sc = e % kChunk;
    CopyAsync4(in.scores + e, p.chunk_scores + (int64_t(chunk + t) * p.heads + head) * kChunk + sc);
  }
  if (threadIdx.x < len) {
    CopyAsync4(in.raw_i + threadIdx.x, p.igate + int64_t(chunk + threadIdx.x) * p.proj_stride + head);
    CopyAsync4(in.raw_f + threadIdx.x, p.fgate + int64_t(chunk + threadIdx.x) * p.proj_stride + head);
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

// scores[row, head, s] = q̂_row · k_(chunk start + s) for the rows of each chunk (s <= the
// row's place in its chunk; the rest untouched). The chunk's q and k staged in shared memory
// with cp.async ([kChunk, dqk + 4]: the fragments' lanes on distinct banks); warp w computes
// the 16x8 tile (tokens 16 (w / 4).., keys 8 (w % 4)..) over dqk in k8 steps, scaled at the end.
__global__ void __launch_bounds__(kRegThreads) MlstmChunkScoresKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  extern __shared__ float smem[];
  const int seq = blockIdx.x, head = blockIdx.y;
  const int chunk = p.seq_row_begin[seq] + int(blockIdx.z) * kChunk, end = SeqRowEnd(p, seq);
  if (chunk >= end) return;
  const int len = min(kChunk, end - chunk), qs = p.dqk + 4;
  float* q = smem;
  float* k = smem + kChunk * qs;
  StageQk(p, head, chunk, len, qs, q, k);
  asm volatile("cp.async.commit_group;\n" ::);
  asm volatile("cp.async.wait_all;\n" ::: "memory");
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int t0 = 16 * (warp / 4), s0 = 8 * (warp % 4);
  // Rows past len hold whatever shared memory held: read as zeros (NaN bits would spread).
  const auto at = [&](const float* m, int row, int i) { return row < len && i < p.dqk ? m[row * qs + i] : 0.0f; };
  float d[4] = {0, 0, 0, 0};
  for (int i0 = 0; i0 < p.dqk; i0 += 8) {
    const float a[4] = {at(q, t0 + g, i0 + t4), at(q, t0 + g + 8, i0 + t4), at(q, t0 + g, i0 + t4 + 4),
                        at(q, t0 + g + 8, i0 + t4 + 4)};
    const float b[2] = {at(k, s0 + g, i0 + t4), at(k, s0 + g, i0 + t4 + 4)};
    Mma3xTf32(d, SplitFrag(a), SplitFrag(b));
  }
  const float scale = rsqrtf(static_cast<float>(p.dqk));
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int t = t0 + g + (e >= 2 ? 8 : 0), sc = s0 + 2 * t4 + (e & 1);
    if (t < len && sc <= t) p.chunk_scores[(int64_t(chunk + t) * p.heads + head) * kChunk + sc] = d[e] * scale;
  }
}

template <typename T, int kIBlocks>
__global__ void __launch_bounds__(kRegThreads) MlstmChunkwiseKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  extern __shared__ float4 smem4[];  // float4: 16-byte aligned rows of q and k
  float* smem = reinterpret_cast<float*>(smem4);
  const ChunkSmem s = CarveSmem(smem, p.dqk);
  const int seq = blockIdx.x, head = blockIdx.y, tile = blockIdx.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t4 = lane % 4;
  const int qs = QkStride(p.dqk);
  // This warp's C: columns jl0 + g (+ 8) of the tile, rows i0 + 8 ib + 2 t4 (+ 1).
  const int jl0 = 16 * (warp % 2), i0 = (warp / 2) * 8 * kIBlocks;
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
  const int begin = p.seq_row_begin[seq], end = SeqRowEnd(p, seq);
  StageChunk(p, head, tile, begin, min(kChunk, end - begin), StagedAt(smem, p.dqk, 0));

  // acc[ib]: Cᵀ[j][i] at (j, i) = (jl0 + g, i) / (jl0 + g, i + 1) / (jl0 + g + 8, i) /
  // (jl0 + g + 8, i + 1), i = i0 + 8 ib + 2 t4, j local to the tile.
  const auto c_at = [&](int i, int jl) -> T* {
    const int j = tile * kRegCols + jl;
    return i < p.dqk && j < p.dv ? st.c + int64_t(i) * p.dv + j : nullptr;
  };
  float acc[kIBlocks][4];
#pragma unroll
  for (int ib = 0; ib < kIBlocks; ++ib) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const T* c = c_at(i0 + 8 * ib + 2 * t4 + (e & 1), jl0 + g + (e >= 2 ? 8 : 0));
      acc[ib][e] = c ? ToFloat(*c) : 0.0f;
    }
  }
  for (int i = threadIdx.x; i < p.dqk; i += kRegThreads) s.n[i] = ToFloat(st.n[i]);
  float m = *st.m;  // the stabiliser before the chunk (warp 0 keeps it current)
  const float scale = rsqrtf(static_cast<float>(p.dqk));

  for (int chunk = begin, buf = 0; chunk < end; chunk += kChunk, buf ^= 1) {
    const int len = min(kChunk, end - chunk);
    const Staged in = StagedAt(smem, p.dqk, buf);
    __syncthreads();  // the previous chunk is done with shared memory, the other buffer included
    const int next = chunk + kChunk;
    StageChunk(p, head, tile, next, max(0, min(kChunk, end - next)), StagedAt(smem, p.dqk, buf ^ 1));
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    __syncthreads();  // every thread's copies of this chunk have landed

    // Gate scan: lane t of warp 0 is token t.
    if (warp == 0) {
      const bool live = lane < len;
      const LogGates lg =
          live ? MlstmLogGates(in.raw_i[lane], in.raw_f[lane], p.gate_cap) : LogGates{-INFINITY, 0.0f};
      float b = lg.lf;
      for (int o = 1; o < 32; o <<= 1) {
        const float up = __shfl_up_sync(0xffffffffu, b, o);
        if (lane >= o) b += up;
      }
      const float ig_minus_b = live ? lg.ig - b : -INFINITY;
      float run_max = ig_minus_b;
      for (int o = 1; o < 32; o <<= 1) {
        const float up = __shfl_up_sync(0xffffffffu, run_max, o);
        if (lane >= o) run_max = fmaxf(run_max, up);
      }
      const float mt = b + fmaxf(m, run_max);
      const float b_last = __shfl_sync(0xffffffffu, b, len - 1);
      const float m_last = __shfl_sync(0xffffffffu, mt, len - 1);
      if (live) {
        s.gate[kE * kChunk + lane] = expf(b_last + ig_minus_b - m_last);
        s.gate[kA * kChunk + lane] = expf(b + m - mt);
        s.gate[kM * kChunk + lane] = mt;
        s.gate[kIgMinusB * kChunk + lane] = ig_minus_b;
        s.gate[kB * kChunk + lane] = b;
      }
      if (lane == 0) *s.decay = expf(b_last + m - m_last);
      m = m_last;
    }
    __syncthreads();

    // P_ts = (q̂_t · k_s) D_ts for s <= t (the dot products from MlstmChunkScores), and q̂_t · n
    // in column kChunk (warp w takes tokens w, w + 8, ..., its lanes split i).
    for (int e = threadIdx.x; e < len * kChunk; e += kRegThreads) {
      const int t = e / kChunk, sc = e % kChunk;
      s.p[t * (kChunk + 2) + sc] =
          sc <= t ? in.scores[e] * expf(s.gate[kB * kChunk + t] + s.gate[kIgMinusB * kChunk + sc] -
                                        s.gate[kM * kChunk + t])
                  : 0.0f;
    }
    for (int t = warp; t < len; t += kRegRowGroups) {
      float dot = 0;
      for (int i = lane; i < p.dqk; i += 32) dot += in.q[t * qs + i] * s.n[i];
      dot = WarpSum(dot);
      if (lane == 0) s.p[t * (kChunk + 2) + kChunk] = dot * scale;
    }

    // This warp's share of q̂_tᵀC (tokens x its 16 columns, over its rows): M = tokens (two
    // blocks of 16), N = columns (two blocks of 8), K = rows in the permuted order above. Q̂
    // rows past len are read as zeros (stale or never written).
    float inter[2][2][4] = {};
#pragma unroll
    for (int ib = 0; ib < kIBlocks; ++ib) {
      const int i = i0 + 8 * ib + 2 * t4;
      const bool live_i = i < p.dqk;  // dqk % 4 == 0: i and i + 1 are both in or both out
      const Tf32Frag<2> b_lo_cols = SplitFrag({acc[ib][0], acc[ib][1]});  // columns jl0 + g
      const Tf32Frag<2> b_hi_cols = SplitFrag({acc[ib][2], acc[ib][3]});  // columns jl0 + g + 8
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const int t = 16 * mt + g;
        float2 r0 = make_float2(0, 0), r1 = make_float2(0, 0);
        if (live_i && t < len) r0 = *reinterpret_cast<const float2*>(in.q + t * qs + i);
        if (live_i && t + 8 < len) r1 = *reinterpret_cast<const float2*>(in.q + (t + 8) * qs + i);
        const Tf32Frag<4> a = SplitFrag({r0.x, r1.x, r0.y, r1.y});
        Mma3xTf32(inter[mt][0], a, b_lo_cols);
        Mma3xTf32(inter[mt][1], a, b_hi_cols);
      }
    }
    float* part = s.part + (warp / 2) * kChunk * kVStride;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int nb = 0; nb < 2; ++nb) {
        const int t = 16 * mt + g, jl = jl0 + 8 * nb + 2 * t4;
        *reinterpret_cast<float2*>(part + t * kVStride + jl) =
            make_float2(inter[mt][nb][0] * scale, inter[mt][nb][1] * scale);
        *reinterpret_cast<float2*>(part + (t + 8) * kVStride + jl) =
            make_float2(inter[mt][nb][2] * scale, inter[mt][nb][3] * scale);
      }
    }
    __syncthreads();

    // h of the tokens warp, warp + 8, ...; lane = column of the tile. Every lane forms the
    // token's denominator itself (broadcast reads) rather than waiting on a barrier for it.
    const int col = tile * kRegCols + lane;
    for (int t = warp; t < len; t += kRegRowGroups) {
      float across = 0;
#pragma unroll
      for (int qt = 0; qt < kQuarters; ++qt) across += s.part[(qt * kChunk + t) * kVStride + lane];
      // Unrolled over the whole chunk (so the loads pipeline); rows past t or len are masked,
      // since their v may be stale (P is zero past the diagonal).
      float intra = 0, p_sum = 0;
#pragma unroll
      for (int sc = 0; sc < kChunk; ++sc) {
        const float pts = s.p[t * (kChunk + 2) + sc];
        p_sum += pts;
        if (sc <= t) intra += pts * in.v[sc * kVStride + lane];
      }
      const float a = s.gate[kA * kChunk + t];
      const float den = a * s.p[t * (kChunk + 2) + kChunk] + p_sum;
      if (col < p.dv) {
        p.h[int64_t(chunk + t) * p.heads * p.dv + int64_t(head) * p.dv + col] =
            (a * across + intra) / (fmaxf(fabsf(den), expf(-s.gate[kM * kChunk + t])) + p.eps);
      }
    }

    // Cᵀ' = g Cᵀ + (e ⊙ V)ᵀ K over this warp's tiles: M = columns, N = rows i, K = tokens
    // (e_s = 0 past len; K rows past len read as zeros).
    const float decay = *s.decay;
#pragma unroll
    for (int ib = 0; ib < kIBlocks; ++ib) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[ib][e] *= decay;
    }
#pragma unroll
    for (int ts = 0; ts < kChunk / 8; ++ts) {
      const int ta = 8 * ts + t4, tb = ta + 4;
      // Rows past len: e is zero there, but v may be stale or never written (NaN bits).
      const auto ev = [&](int t, int jl) { return t < len ? s.gate[kE * kChunk + t] * in.v[t * kVStride + jl] : 0.0f; };
      const Tf32Frag<4> a = SplitFrag({ev(ta, jl0 + g), ev(ta, jl0 + g + 8), ev(tb, jl0 + g), ev(tb, jl0 + g + 8)});
#pragma unroll
      for (int ib = 0; ib < kIBlocks; ++ib) {
        const int i = i0 + 8 * ib + g;
        Mma3xTf32(acc[ib], a,
                  SplitFrag({ta < len && i < p.dqk ? in.k[ta * qs + i] : 0.0f,
                             tb < len && i < p.dqk ? in.k[tb * qs + i] : 0.0f}));
      }
    }
    for (int i = threadIdx.x; i < p.dqk; i += kRegThreads) {
      float update = 0;
      for (int sc = 0; sc < len; ++sc) update += s.gate[kE * kChunk + sc] * in.k[sc * qs + i];
      s.n[i] = decay * s.n[i] + update;
    }
  }
#pragma unroll
  for (int ib = 0; ib < kIBlocks; ++ib) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      T* c = c_at(i0 + 8 * ib + 2 * t4 + (e & 1), jl0 + g + (e >= 2 ? 8 : 0));
      if (c) *c = FromFloat<T>(acc[ib][e]);
    }
  }
  if (tile == 0) {
    __syncthreads();  // the last chunk's n update is complete
    float* nm = p.chunk_nm + (int64_t(seq) * p.heads + head) * (p.dqk + 1);
    for (int i = threadIdx.x; i < p.dqk; i += kRegThreads) nm[i] = s.n[i];
    if (threadIdx.x == 0) nm[p.dqk] = m;
  }
}

// n' and m' from p.chunk_nm into the slot; grid (num_seqs, heads).
template <typename T>
__global__ void MlstmChunkStoreNmKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[blockIdx.x], blockIdx.y, p.dqk, p.dv);
  const float* nm = p.chunk_nm + (int64_t(blockIdx.x) * p.heads + blockIdx.y) * (p.dqk + 1);
  for (int i = threadIdx.x; i < p.dqk; i += blockDim.x) st.n[i] = FromFloat<T>(nm[i]);
  if (threadIdx.x == 0) *st.m = nm[p.dqk];
}

template <typename T, int kIBlocks>
void LaunchChunkwiseBlocks(const MlstmParams& p, cudaStream_t stream) {
  const dim3 grid(p.num_seqs, p.heads, (p.dv + kRegCols - 1) / kRegCols);
  const size_t smem = ChunkSmemFloats(p.dqk) * sizeof(float);
  // Above the 48 KB default; set once per instantiation, for the largest dqk it serves.
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(MlstmChunkwiseKernel<T, kIBlocks>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(ChunkSmemFloats(kQuarters * 8 * kIBlocks) * sizeof(float)));
  (void)opt_in;  // had it failed, the launch fails and cudaGetLastError reports that
  LaunchDependent(MlstmChunkwiseKernel<T, kIBlocks>, grid, kRegThreads, smem, stream, p);
}

template <typename T>
cudaError_t LaunchChunkwise(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  const size_t score_smem = size_t(2) * kChunk * (p.dqk + 4) * sizeof(float);
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(MlstmChunkScoresKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(size_t(2) * kChunk * (kRegRowGroups * kRegMaxRows + 4) * sizeof(float)));
  (void)opt_in;
  const dim3 score_grid(p.num_seqs, p.heads, (max_tokens + kChunk - 1) / kChunk);
  LaunchDependent(MlstmChunkScoresKernel, score_grid, kRegThreads, score_smem, stream, p);
  // Rows of C per warp quarter: 8 kIBlocks >= dqk / 4 (LaunchByRegRows counts dqk / 8 per group).
  const cudaError_t e = LaunchByRegRows<4>(
      p.dqk, [&](auto rows) { LaunchChunkwiseBlocks<T, decltype(rows)::value / 4>(p, stream); });
  if (e != cudaSuccess) return e;
  LaunchDependent(MlstmChunkStoreNmKernel<T>, dim3(p.num_seqs, p.heads), 128, 0, stream, p);
  return cudaGetLastError();
}

}  // namespace

// Shared memory is the limit (227 KB a block on sm_90): dqk up to ~340.
bool MlstmChunkwiseSupports(int dqk) {
  return dqk % 4 == 0 && dqk <= kRegRowGroups * kRegMaxRows && ChunkSmemFloats(dqk) * sizeof(float) <= 227 * 1024;
}

cudaError_t MlstmChunkwise(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (!MlstmChunkwiseSupports(p.dqk) || p.h == nullptr || p.seq_defer != nullptr || p.chunk_scores == nullptr ||
      p.chunk_nm == nullptr) {
    return cudaErrorInvalidValue;
  }
  return p.state.type == StateType::kF32 ? LaunchChunkwise<float>(p, max_tokens, stream)
                                         : LaunchChunkwise<__nv_bfloat16>(p, max_tokens, stream);
}

}  // namespace xlserve::kernels
