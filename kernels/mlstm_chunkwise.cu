// MlstmChunkwise: the mLSTM recurrence over a prefill (many tokens per sequence) in its chunkwise
// form: chunks of kChunk tokens, each applied as matrix products instead of one token at a time.
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
// This equals the recurrent form (mlstm_recurrent.cu) up to rounding. C' is written to the slot
// at the end; n and m by MlstmNormalizer afterwards (each block keeps a private n; see
// mlstm_common.cuh). Sequences must not be deferred and h must be non-null.
// Shapes/layout as for MlstmRecurrent (launchers.h): q, k, v, gates column slices of [rows,
// proj_stride] fp32; h [rows, heads*dv]; state pool fp32 or bf16, C held in fp32 registers.
// Launch: first MlstmChunkScoresKernel, all chunks in parallel: the dot products q̂_t · k_s
// within each chunk (which do not depend on the state) into p.chunk_scores. Then grid
// (num_seqs, heads, ceil(dv / kRegCols)), block kRegCols x kRegRowGroups threads, walking the chunks in
// order. Warp w holds rows w * kRows .. (w + 1) * kRows - 1 of C for column tile*kRegCols + lane
// (contiguous, so its reads of q and k rows are float4 broadcasts). Per chunk, double-buffered
// with cp.async (the next chunk's copies fly during this one): q, k ([kChunk, dqk + 4]), v
// (this tile's columns), the gates and the chunk's scores in shared memory; warp 0 scans the
// gates (sums and maxima over its lanes = tokens); P from the scores, q̂·n per warp; each
// thread forms its rows' share of q̂_tᵀC for every token (reduced over the row groups in
// shared memory), then h, then the rank-kChunk update of its C values. Five barriers per chunk
// instead of one per token, and the products over the chunk's tokens are independent, so they
// pipeline. Fp32 CUDA cores; no atomics.
#include <cuda_bf16.h>

#include "kernels/mlstm_common.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kChunk = kChunkTokens;   // warp 0's lanes in the gate scan: at most 32

// One chunk's inputs as staged (cp.async, double-buffered): q (unscaled) and k [kChunk][dqk + 4],
// v [kChunk][kRegCols], raw ĩ and f̃ [kChunk] each, and the scores [kChunk][kChunk].
struct Staged {
  float* q;
  float* k;
  float* v;
  float* raw_i;
  float* raw_f;
  float* scores;
};
__host__ __device__ inline size_t StagedFloats(int dqk) {
  return size_t(2) * kChunk * (dqk + 4) + kChunk * kRegCols + 2 * kChunk + kChunk * kChunk;
}

// Buffer `buf` (0 or 1) of the two at the start of shared memory.
__device__ __forceinline__ Staged StagedAt(float* base, int dqk, int buf) {
  Staged in;
  in.q = base + buf * StagedFloats(dqk);
  in.k = in.q + kChunk * (dqk + 4);
  in.v = in.k + kChunk * (dqk + 4);
  in.raw_i = in.v + kChunk * kRegCols;
  in.raw_f = in.raw_i + kChunk;
  in.scores = in.raw_f + kChunk;
  return in;
}

struct ChunkSmem {
  float* n;        // [dqk]
  float* p;        // [kChunk][kChunk + 2]: P_ts for s < kChunk, then q̂_t · n at s = kChunk
  float* part;     // [kRegRowGroups][kChunk][kRegCols]: row groups' shares of q̂_tᵀC
  float* gate;     // [kGateRows][kChunk]
  float* den;      // [kChunk]
  float* decay;    // [1]: g, the decay of the state over the chunk
};

enum { kA, kM, kE, kIgMinusB, kB, kGateRows };

__host__ __device__ inline size_t ChunkSmemFloats(int dqk) {
  return 2 * StagedFloats(dqk) + dqk + kChunk * (kChunk + 2) + size_t(kRegRowGroups) * kChunk * kRegCols +
         kGateRows * kChunk + kChunk + 1;
}

__device__ ChunkSmem CarveSmem(float* base, int dqk) {
  ChunkSmem s;
  s.n = base + 2 * StagedFloats(dqk);
  s.p = s.n + dqk;
  s.part = s.p + kChunk * (kChunk + 2);
  s.gate = s.part + kRegRowGroups * kChunk * kRegCols;
  s.den = s.gate + kGateRows * kChunk;
  s.decay = s.den + kChunk;
  return s;
}

__device__ __forceinline__ void CopyAsync4(float* dst, const float* src) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(src));
}

// Issues the copies of the chunk of `len` rows from `chunk` into `in` as one commit group
// (empty when len is 0), so that waiting for all but the newest group finds the older done.
__device__ void StageChunk(const MlstmParams& p, int head, int tile, int chunk, int len, const Staged& in) {
  const int qs = p.dqk + 4;
  for (int e = threadIdx.x; e < len * p.dqk; e += kRegThreads) {
    const int t = e / p.dqk, i = e % p.dqk;
    const int64_t at = int64_t(chunk + t) * p.proj_stride + int64_t(head) * p.dqk + i;
    CopyAsync4(in.q + t * qs + i, p.q + at);
    CopyAsync4(in.k + t * qs + i, p.k + at);
  }
  for (int e = threadIdx.x; e < len * kRegCols; e += kRegThreads) {
    const int t = e / kRegCols, j = tile * kRegCols + e % kRegCols;
    if (j < p.dv) {
      CopyAsync4(in.v + e, p.v + int64_t(chunk + t) * p.proj_stride + int64_t(head) * p.dv + j);
    } else {
      in.v[e] = 0.0f;
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
// row's place in its chunk; the rest untouched). Grid (num_seqs, heads, chunks of the longest
// sequence), block kRegThreads: the chunk's q and k staged in shared memory with cp.async (all of
// a thread's copies in flight at once; [kChunk, dqk + 1], padded against bank conflicts), thread
// e of a pass computes entry (e / kChunk, e % kChunk) as one dot product, scaled at the end.
__global__ void __launch_bounds__(kRegThreads) MlstmChunkScoresKernel(MlstmParams p) {
  extern __shared__ float smem[];
  const int seq = blockIdx.x, head = blockIdx.y;
  const int chunk = p.seq_row_begin[seq] + int(blockIdx.z) * kChunk, end = SeqRowEnd(p, seq);
  if (chunk >= end) return;
  const int len = min(kChunk, end - chunk), qs = p.dqk + 1;
  float* q = smem;
  float* k = smem + kChunk * qs;
  const float scale = rsqrtf(static_cast<float>(p.dqk));
  for (int e = threadIdx.x; e < len * p.dqk; e += kRegThreads) {
    const int t = e / p.dqk, i = e % p.dqk;
    const int64_t at = int64_t(chunk + t) * p.proj_stride + int64_t(head) * p.dqk + i;
    CopyAsync4(q + t * qs + i, p.q + at);
    CopyAsync4(k + t * qs + i, p.k + at);
  }
  asm volatile("cp.async.wait_all;\n" ::: "memory");
  __syncthreads();
  for (int e = threadIdx.x; e < len * kChunk; e += kRegThreads) {
    const int t = e / kChunk, sc = e % kChunk;
    if (sc > t) continue;
    float dot = 0;
    for (int i = 0; i < p.dqk; ++i) dot += q[t * qs + i] * k[sc * qs + i];
    p.chunk_scores[(int64_t(chunk + t) * p.heads + head) * kChunk + sc] = dot * scale;
  }
}

template <typename T, int kRows>
__global__ void __launch_bounds__(kRegThreads) MlstmChunkwiseKernel(MlstmParams p) {
  extern __shared__ float4 smem4[];  // float4: 16-byte aligned rows of q and k
  float* smem = reinterpret_cast<float*>(smem4);
  const ChunkSmem s = CarveSmem(smem, p.dqk);
  const int seq = blockIdx.x, head = blockIdx.y, tile = blockIdx.z;
  const int lane = threadIdx.x % kRegCols, group = threadIdx.x / kRegCols;
  const int col = tile * kRegCols + lane;
  const bool has_col = col < p.dv;
  const int qs = p.dqk + 4;  // row stride of q and k: 16-byte rows, and padded
  const int i0 = group * kRows;  // this thread's rows of C: i0 .. i0 + kRows - 1
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
  const int begin = p.seq_row_begin[seq], end = SeqRowEnd(p, seq);
  StageChunk(p, head, tile, begin, min(kChunk, end - begin), StagedAt(smem, p.dqk, 0));

  float c[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = i0 + r;
    c[r] = has_col && i < p.dqk ? ToFloat(st.c[int64_t(i) * p.dv + col]) : 0.0f;
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
    if (group == 0) {
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
        s.gate[kA * kChunk + lane] = expf(b + m - mt);
        s.gate[kM * kChunk + lane] = mt;
        s.gate[kE * kChunk + lane] = expf(b_last + ig_minus_b - m_last);
        s.gate[kIgMinusB * kChunk + lane] = ig_minus_b;
        s.gate[kB * kChunk + lane] = b;
      }
      if (lane == 0) *s.decay = expf(b_last + m - m_last);
      m = m_last;
    }
    __syncthreads();

    // P_ts = (q̂_t · k_s) D_ts for s <= t (the dot products from MlstmChunkScores), and q̂_t · n
    // in column kChunk (warp w takes tokens w, w + kRegRowGroups, ..., its lanes split i).
    for (int e = threadIdx.x; e < len * kChunk; e += kRegThreads) {
      const int t = e / kChunk, sc = e % kChunk;
      s.p[t * (kChunk + 2) + sc] =
          sc <= t ? in.scores[e] * expf(s.gate[kB * kChunk + t] + s.gate[kIgMinusB * kChunk + sc] -
                                        s.gate[kM * kChunk + t])
                  : 0.0f;
    }
    for (int t = group; t < len; t += kRegRowGroups) {
      float dot = 0;
      for (int i = lane; i < p.dqk; i += kRegCols) dot += in.q[t * qs + i] * s.n[i];
      dot = WarpSum(dot);
      if (lane == 0) s.p[t * (kChunk + 2) + kChunk] = dot * scale;
    }
    __syncthreads();

    // Denominators (warp 0), and every thread's share of q̂_tᵀC over its rows.
    if (group == 0 && lane < len) {
      float intra = 0;
#pragma unroll
      for (int sc = 0; sc < kChunk; ++sc) intra += s.p[lane * (kChunk + 2) + sc];  // zero past the diagonal
      s.den[lane] = s.gate[kA * kChunk + lane] * s.p[lane * (kChunk + 2) + kChunk] + intra;
    }
    float inter[kChunk];
#pragma unroll
    for (int t = 0; t < kChunk; ++t) inter[t] = 0;
#pragma unroll
    for (int r = 0; r < kRows; r += 4) {
      if (i0 + r < p.dqk) {
#pragma unroll
        for (int t = 0; t < kChunk; ++t) {
          const float4 qv = *reinterpret_cast<const float4*>(in.q + t * qs + i0 + r);
          inter[t] += qv.x * c[r] + qv.y * c[r + 1] + qv.z * c[r + 2] + qv.w * c[r + 3];
        }
      }
    }
#pragma unroll
    for (int t = 0; t < kChunk; ++t) s.part[(group * kChunk + t) * kRegCols + lane] = inter[t] * scale;
    __syncthreads();

    // h of the tokens group, group + kRegRowGroups, ...
    for (int t = group; t < len; t += kRegRowGroups) {
      float across = 0;
#pragma unroll
      for (int g = 0; g < kRegRowGroups; ++g) across += s.part[(g * kChunk + t) * kRegCols + lane];
      // Unrolled over the whole chunk (so the loads pipeline); rows past t or len are masked,
      // since their v may be stale.
      float intra = 0;
#pragma unroll
      for (int sc = 0; sc < kChunk; ++sc) {
        if (sc <= t) intra += s.p[t * (kChunk + 2) + sc] * in.v[sc * kRegCols + lane];
      }
      const float num = s.gate[kA * kChunk + t] * across + intra;
      if (has_col) {
        p.h[int64_t(chunk + t) * p.heads * p.dv + int64_t(head) * p.dv + col] =
            num / (fmaxf(fabsf(s.den[t]), expf(-s.gate[kM * kChunk + t])) + p.eps);
      }
    }

    // C' = g C + Σ_s e_s k_s v_sᵀ over this thread's rows; n' likewise over all of n.
    // Token-outer, so that the kRows updates of one token are independent of each other.
    const float g = *s.decay;
#pragma unroll
    for (int r = 0; r < kRows; ++r) c[r] *= g;
    for (int sc = 0; sc < len; ++sc) {
      const float ev = s.gate[kE * kChunk + sc] * in.v[sc * kRegCols + lane];
      const float* k = in.k + sc * qs + i0;
#pragma unroll
      for (int r = 0; r < kRows; r += 4) {
        if (i0 + r < p.dqk) {
          const float4 kv = *reinterpret_cast<const float4*>(k + r);
          c[r] += kv.x * ev;
          c[r + 1] += kv.y * ev;
          c[r + 2] += kv.z * ev;
          c[r + 3] += kv.w * ev;
        }
      }
    }
    for (int i = threadIdx.x; i < p.dqk; i += kRegThreads) {
      float update = 0;
      for (int sc = 0; sc < len; ++sc) update += s.gate[kE * kChunk + sc] * in.k[sc * qs + i];
      s.n[i] = g * s.n[i] + update;
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = i0 + r;
    if (has_col && i < p.dqk) st.c[int64_t(i) * p.dv + col] = FromFloat<T>(c[r]);
  }
}

template <typename T, int kRows>
void LaunchChunkwiseRows(const MlstmParams& p, cudaStream_t stream) {
  const dim3 grid(p.num_seqs, p.heads, (p.dv + kRegCols - 1) / kRegCols);
  const size_t smem = ChunkSmemFloats(p.dqk) * sizeof(float);
  // Above the 48 KB default; set once per instantiation, for the largest dqk it serves.
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(MlstmChunkwiseKernel<T, kRows>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(ChunkSmemFloats(kRows * kRegRowGroups) * sizeof(float)));
  (void)opt_in;  // had it failed, the launch fails and cudaGetLastError reports that
  MlstmChunkwiseKernel<T, kRows><<<grid, kRegThreads, smem, stream>>>(p);
}

template <typename T>
cudaError_t LaunchChunkwise(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  const size_t score_smem = size_t(2) * kChunk * (p.dqk + 1) * sizeof(float);
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(MlstmChunkScoresKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(size_t(2) * kChunk * (kRegRowGroups * kRegMaxRows + 1) * sizeof(float)));
  (void)opt_in;
  const dim3 score_grid(p.num_seqs, p.heads, (max_tokens + kChunk - 1) / kChunk);
  MlstmChunkScoresKernel<<<score_grid, kRegThreads, score_smem, stream>>>(p);
  // At least 8 rows per thread: its rows are read 4 at a time.
  return LaunchByRegRows<8>(p.dqk, [&](auto rows) { LaunchChunkwiseRows<T, decltype(rows)::value>(p, stream); });
}

}  // namespace

// Shared memory is the limit (227 KB a block on sm_90): dqk up to ~300.
bool MlstmChunkwiseSupports(int dqk) {
  return dqk % 4 == 0 && dqk <= kRegRowGroups * kRegMaxRows && ChunkSmemFloats(dqk) * sizeof(float) <= 227 * 1024;
}

cudaError_t MlstmChunkwise(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (!MlstmChunkwiseSupports(p.dqk) || p.h == nullptr || p.seq_defer != nullptr || p.chunk_scores == nullptr) {
    return cudaErrorInvalidValue;
  }
  return LaunchByStateTypeThenNormalize(
      p, stream, [&](auto state) { return LaunchChunkwise<decltype(state)>(p, max_tokens, stream); });
}

}  // namespace xlserve::kernels
