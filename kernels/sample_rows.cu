// SampleRows: the token Sampler::Sample (engine/sampling/sampler.h) picks, computed on the GPU.
//
// Per sampled row (V = vocab; the penalty entries list each distinct token t of prompt + output
// once with c = its count in the output):
//   l[i] = logits[i], then for each entry (t, c), as separately rounded float ops (penalties.h):
//          if r != 1:  l[t] = l[t] > 0 ? l[t] / r : l[t] * r
//          if c > 0 and (fp != 0 or pp != 0):  l[t] = (l[t] - fp * float(c)) - pp
//   b    = the lowest id among the largest l (NaN as -inf); none (every l NaN or -inf): token -1.
//   T = 0 (greedy): token b, no draw. Otherwise, with L = l[b] (distribution.h):
//   w[i] = 1 if l[i] == L, else exp(double(float(float(l[i] - L) / T))); 0 for NaN.
//   rank: l descending, ties by lower id. With key(l) a 32-bit key monotone in l (-0 and +0
//        equal, NaN lowest), a rank prefix is {key > K} plus the first q ids with key == K.
//   top-k (0 < k < V): the prefix of k tokens. top-p (p < 1): the prefix of tokens whose mass
//        before them (Σ w of higher-ranked top-k tokens) is < p * Σ w over the top-k set. Each
//        cut is found by radix select over the key, 4 bits per pass from the top (8 passes):
//        histograms of f (1 for top-k, w for top-p) over the tokens matching the bits chosen
//        so far give the 4 bits whose bin the running sum of f reaches the target in; the ties
//        at K are then split by their index among equal keys in id order. Dropped tokens get
//        w = 0.
//   min-p: w[i] = 0 where w[i] < min_p.
//   Z = Σ w; p[i] = float(w[i] / Z); total = Σ p (double); u = PhiloxUniform(seed, draw_index);
//   token = the lowest id whose running Σ p (ascending id) exceeds u * total, else the highest
//   id with p > 0.
// Float steps, keys, counts and cuts are bit-exact. The double sums (top-p mass, Z, total,
// running Σ p) run in another order than the CPU's, which distribution.h allows: a kept set or a
// drawn token can then differ from the CPU only within ~1e-15 relative of a threshold. Every
// sum has a fixed order, so the kernel is deterministic.
//
// Layout: logits fp32 [*, V] row-major; scratch per launch row r: l fp32 [V] (the penalised
// row, later p) and w fp64 [V]; tokens int32 [num_rows]. Launch: grid (num_rows), block
// kThreads. Warp j owns the contiguous ids [j * R, (j + 1) * R) (R a multiple of 32) and walks
// them 32 at a time (lane = id mod 32), kSteps loads ahead: every pass is coalesced, and sums in
// id order are a warp scan per step plus one scan over the warps. Radix histograms are per
// thread in dynamic shared memory (no atomics: a fixed summation order).
#include <cstdint>

#include "engine/sampling/philox_core.h"
#include "kernels/dependent_launch.cuh"
#include "kernels/launchers.h"

namespace xlserve::kernels {
namespace {

// One block of 1024 threads per row: a row is a few hundred KB, and at batch 1 a single
// multiprocessor reads it, so it needs every load it can keep in flight.
constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kSteps = 4;  // 32-id steps a warp loads ahead
constexpr unsigned kFullMask = 0xffffffffu;
// 4-bit digits: a per-thread fp64 histogram of 16 bins is 128 KB of shared memory for the
// block (8-bit digits would need 2 MB), at the price of 8 passes per cut instead of 4.
constexpr int kDigitBits = 4;
constexpr int kBins = 1 << kDigitBits;
constexpr size_t kHistBytes = sizeof(double) * kBins * kThreads;
static_assert(kWarps == 2 * kBins, "the bin sums give each bin two warps");

struct Shared {
  double halves[2][kBins];  // radix select: each bin summed over half of the threads
  double f64[kWarps];       // block reductions and scans
  int i32[kWarps];
  unsigned long long u64[kWarps];
};

__device__ __forceinline__ int Lane() { return threadIdx.x & 31; }
__device__ __forceinline__ int Warp() { return threadIdx.x >> 5; }

struct Plus {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct Min {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a < b ? a : b; }
};
struct Max {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// `op` over the warp (op commutative: the butterfly gives every lane the same value).
template <typename T, typename Op>
__device__ T WarpReduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// `op` over the block, the warps folded in order; every thread gets the result. `scratch`:
// kWarps shared values.
template <typename T, typename Op>
__device__ T BlockReduce(T v, Op op, T* scratch) {
  v = WarpReduce(v, op);
  __syncthreads();  // an earlier call may still read `scratch`
  if (Lane() == 0) scratch[Warp()] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < kWarps; ++w) r = op(r, scratch[w]);
  return r;
}

// For a value that is the same in every lane of a warp: Σ over the warps before this one;
// *total gets Σ over all warps.
template <typename T>
__device__ T WarpsBefore(T v, T* scratch, T* total) {
  __syncthreads();
  if (Lane() == 0) scratch[Warp()] = v;
  __syncthreads();
  T before = T(0), all = T(0);
  for (int w = 0; w < kWarps; ++w) {
    if (w < Warp()) before = before + scratch[w];
    all = all + scratch[w];
  }
  *total = all;
  return before;
}

// a > b  <=>  RankKey(a) > RankKey(b) for non-NaN floats; -0 and +0 tie (the CPU's comparisons
// see them equal) and NaN ranks with -inf (its weight is 0 either way).
__device__ __forceinline__ uint32_t RankKey(float x) {
  if (isnan(x)) x = -INFINITY;
  if (x == 0.0f) x = 0.0f;
  const uint32_t bits = __float_as_uint(x);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ __forceinline__ float Penalise(float x, int generated, const SampleRowSpec& s) {
  if (s.repetition_penalty != 1.0f) {
    x = x > 0.0f ? __fdiv_rn(x, s.repetition_penalty) : __fmul_rn(x, s.repetition_penalty);
  }
  if (generated > 0 && (s.presence_penalty != 0.0f || s.frequency_penalty != 0.0f)) {
    x = __fsub_rn(x, __fmul_rn(s.frequency_penalty, __int2float_rn(generated)));
    x = __fsub_rn(x, s.presence_penalty);
  }
  return x;
}

// This warp's ids [begin, end); begin is a multiple of 32.
struct WarpRange {
  int begin, end;
};
__device__ __forceinline__ WarpRange OwnRange(int n) {
  const int per_warp = 32 * ((n + 32 * kWarps - 1) / (32 * kWarps));
  const int begin = min(n, Warp() * per_warp);
  return {begin, min(n, begin + per_warp)};
}

// Calls visit(i, valid, load(i)) for every 32-id step of the warp's range in id order, each lane
// at id i = step + lane (valid: i < end; load is not called for invalid ids, whose value is
// T{}), kSteps loads ahead. Every lane sees every step, so visit may use warp collectives;
// visit returns false (the same in every lane) to stop.
template <typename Load, typename Visit>
__device__ void WalkRange(const WarpRange& r, Load load, Visit visit) {
  using T = decltype(load(0));
  for (int base = r.begin; base < r.end; base += 32 * kSteps) {
    T v[kSteps];
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int i = base + 32 * s + Lane();
      v[s] = i < r.end ? load(i) : T{};
    }
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int i = base + 32 * s + Lane();
      if (!visit(i, i < r.end, v[s])) return;
    }
  }
}

struct KeyWeight {
  uint32_t key;
  double w;
};

// A rank-prefix cut: keep key > `key`, and a token with key == `key` whose running sum of f
// before it, above + (its index among the equal keys) * f, is < the target. found = false:
// keep all.
struct Cut {
  uint32_t key;
  double above;  // Σ f over keys > key
  bool found;
};

// The token where the running sum of f in rank order first reaches `target` (> 0), with f = 1
// (kMass false) or f = w (kMass true). When rounding leaves a prefix's parts short of what its
// bin held, the prefix's lowest non-empty bin is taken: a difference of a few ulps at a
// threshold, as distribution.h allows.
template <bool kMass>
__device__ Cut RadixSelect(const float* l, const double* w, int n, double target, double* hist, Shared& sh) {
  const WarpRange r = OwnRange(n);
  double* mine = hist + threadIdx.x;  // this thread's column of [kBins][kThreads]
  uint32_t prefix = 0, mask = 0;
  double above = 0.0;
  for (int shift = 32 - kDigitBits; shift >= 0; shift -= kDigitBits) {
    for (int b = 0; b < kBins; ++b) mine[b * kThreads] = 0.0;
    // Runs of one bin add up in a register; a thread's ids come in a fixed order.
    int run_bin = -1;
    double run = 0.0;
    for (int base = r.begin; base < r.end; base += 32 * kSteps) {
      uint32_t key[kSteps];
      bool match[kSteps];
      double f[kSteps];
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const int i = base + 32 * s + Lane();
        key[s] = i < r.end ? RankKey(l[i]) : 0u;
        match[s] = i < r.end && (key[s] & mask) == prefix;
      }
#pragma unroll
      for (int s = 0; s < kSteps; ++s) f[s] = !match[s] ? 0.0 : kMass ? w[base + 32 * s + Lane()] : 1.0;
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        if (!match[s]) continue;
        const int b = (key[s] >> shift) & (kBins - 1);
        if (b != run_bin) {
          if (run_bin >= 0) mine[run_bin * kThreads] += run;
          run_bin = b;
          run = 0.0;
        }
        run += f[s];
      }
    }
    if (run_bin >= 0) mine[run_bin * kThreads] += run;
    __syncthreads();
    {
      const int b = Warp() % kBins, half = Warp() / kBins;
      double sum = 0.0;
      for (int t = half * (kThreads / 2) + Lane(); t < (half + 1) * (kThreads / 2); t += 32) sum += hist[b * kThreads + t];
      sum = WarpReduce(sum, Plus{});
      if (Lane() == 0) sh.halves[half][b] = sum;
    }
    __syncthreads();
    // Every thread walks the same values in the same order, so all choose the same digit.
    int digit = -1;
    double before = above, running = above;
    for (int d = kBins - 1; d >= 0; --d) {
      const double bin = sh.halves[0][d] + sh.halves[1][d];
      if (bin > 0.0) {
        digit = d;
        before = running;
      }
      if (running + bin >= target) break;
      running += bin;
    }
    __syncthreads();  // the next pass rewrites the histograms and halves
    if (digit < 0) return {0, 0.0, false};
    above = before;
    prefix |= static_cast<uint32_t>(digit) << shift;
    mask |= static_cast<uint32_t>(kBins - 1) << shift;
  }
  return {prefix, above, true};
}

// Zeroes w outside `cut` (RadixSelect<kMass> with the same target); returns Σ w of the kept.
template <bool kMass>
__device__ double ApplyCut(const float* l, double* w, int n, const Cut& cut, double target, Shared& sh) {
  const WarpRange r = OwnRange(n);
  double kept = 0.0;
  if (!cut.found) {
    WalkRange(r, [w](int i) { return w[i]; }, [&](int, bool, double wi) {
      kept += wi;
      return true;
    });
    return BlockReduce(kept, Plus{}, sh.f64);
  }
  int ties = 0;
  WalkRange(r, [l](int i) { return RankKey(l[i]); }, [&](int, bool valid, uint32_t key) {
    ties += __popc(__ballot_sync(kFullMask, valid && key == cut.key));
    return true;
  });
  int all_ties;
  int tie = WarpsBefore(ties, sh.i32, &all_ties);  // index of the warp's next tie
  const unsigned lanes_before = (1u << Lane()) - 1u;
  WalkRange(r, [l, w](int i) { return KeyWeight{RankKey(l[i]), w[i]}; }, [&](int i, bool valid, KeyWeight v) {
    const bool is_tie = valid && v.key == cut.key;
    const unsigned tie_lanes = __ballot_sync(kFullMask, is_tie);
    if (valid) {
      bool keep = v.key > cut.key;
      if (is_tie) {
        const int index = tie + __popc(tie_lanes & lanes_before);
        keep = cut.above + static_cast<double>(index) * (kMass ? v.w : 1.0) < target;
      }
      if (keep) {
        kept += v.w;
      } else if (v.w != 0.0) {
        w[i] = 0.0;
      }
    }
    tie += __popc(tie_lanes);
    return true;
  });
  return BlockReduce(kept, Plus{}, sh.f64);  // its barriers also order the zeroes before later reads
}

__global__ void __launch_bounds__(kThreads, 1) SampleRowsKernel(SampleRowsParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  extern __shared__ double hist[];  // [kBins][kThreads]
  __shared__ Shared sh;
  const SampleRowSpec s = p.rows[blockIdx.x];
  const int n = p.vocab;
  const WarpRange range = OwnRange(n);
  const float* in = p.logits + static_cast<int64_t>(s.logits_row) * n;
  float* scratch = p.penalised + static_cast<int64_t>(blockIdx.x) * n;
  double* w = p.weights + static_cast<int64_t>(blockIdx.x) * n;

  // The penalised row lives in scratch; without penalties the logits are read in place.
  const float* l = in;
  if (s.penalty_count > 0) {
    WalkRange(range, [in](int i) { return in[i]; }, [scratch](int i, bool valid, float x) {
      if (valid) scratch[i] = x;
      return true;
    });
    __syncthreads();
    for (int e = threadIdx.x; e < s.penalty_count; e += kThreads) {
      const PenaltyEntry pe = p.penalties[s.penalty_begin + e];
      scratch[pe.token] = Penalise(scratch[pe.token], pe.generated, s);
    }
    __syncthreads();
    l = scratch;
  }

  // The best token as one 64-bit maximum: key, then the lower id.
  unsigned long long best = 0;
  WalkRange(range, [l](int i) { return RankKey(l[i]); }, [&best](int i, bool valid, uint32_t key) {
    if (valid) best = max(best, (static_cast<unsigned long long>(key) << 32) | (0xffffffffu - static_cast<uint32_t>(i)));
    return true;
  });
  best = BlockReduce(best, Max{}, sh.u64);
  if (static_cast<uint32_t>(best >> 32) <= RankKey(-INFINITY)) {  // every logit NaN or -inf
    if (threadIdx.x == 0) p.tokens[blockIdx.x] = -1;
    return;
  }
  const int b = static_cast<int>(0xffffffffu - static_cast<uint32_t>(best));
  if (s.temperature == 0.0f) {
    if (threadIdx.x == 0) p.tokens[blockIdx.x] = b;
    return;
  }

  const float max_logit = l[b];
  double mass = 0.0;
  WalkRange(range, [l](int i) { return l[i]; }, [&](int i, bool valid, float x) {
    if (!valid) return true;
    double wi = 0.0;
    if (x == max_logit) {
      wi = 1.0;
    } else if (!isnan(x)) {
      wi = exp(static_cast<double>(__fdiv_rn(__fsub_rn(x, max_logit), s.temperature)));
    }
    w[i] = wi;
    mass += wi;
    return true;
  });
  mass = BlockReduce(mass, Plus{}, sh.f64);  // Σ w, and w complete before the passes below

  if (s.top_k > 0 && s.top_k < n) {
    const double k = s.top_k;
    mass = ApplyCut<false>(l, w, n, RadixSelect<false>(l, w, n, k, hist, sh), k, sh);
  }
  if (s.top_p < 1.0f) {
    const double target = static_cast<double>(s.top_p) * mass;
    mass = ApplyCut<true>(l, w, n, RadixSelect<true>(l, w, n, target, hist, sh), target, sh);
  }
  if (s.min_p > 0.0f) {
    const double floor = s.min_p;
    mass = 0.0;
    WalkRange(range, [w](int i) { return w[i]; }, [&](int i, bool valid, double wi) {
      if (!valid) return true;
      if (wi < floor) {
        if (wi != 0.0) w[i] = 0.0;
      } else {
        mass += wi;
      }
      return true;
    });
    mass = BlockReduce(mass, Plus{}, sh.f64);
  }
  const double z = mass;

  // The inverse-CDF pick over p in id order; p goes to scratch (l is no longer needed).
  float* prob = scratch;
  double own = 0.0;
  WalkRange(range, [w](int i) { return w[i]; }, [&](int i, bool valid, double wi) {
    if (!valid) return true;
    const float pi = static_cast<float>(wi / z);
    prob[i] = pi;
    if (pi > 0.0f) own += pi;
    return true;
  });
  own = WarpReduce(own, Plus{});
  double total;
  double running = WarpsBefore(own, sh.f64, &total);  // its barriers order prob before the reads
  const double target = philox::Uniform(s.seed, s.draw_index) * total;
  int pick = n, last = -1;
  WalkRange(range, [prob](int i) { return prob[i]; }, [&](int i, bool valid, float pi) {
    const bool positive = valid && pi > 0.0f;
    // Inclusive scan of the step's p in lane order, on top of the running sum.
    double inclusive = positive ? static_cast<double>(pi) : 0.0;
    for (int o = 1; o < 32; o <<= 1) {
      const double up = __shfl_up_sync(kFullMask, inclusive, o);
      if (Lane() >= o) inclusive += up;
    }
    const unsigned hits = __ballot_sync(kFullMask, positive && target < running + inclusive);
    const unsigned positives = __ballot_sync(kFullMask, positive);
    const int step = i - Lane();
    if (hits != 0) {
      pick = step + __ffs(hits) - 1;
      return false;
    }
    if (positives != 0) last = step + 31 - __clz(positives);
    running += __shfl_sync(kFullMask, inclusive, 31);
    return true;
  });
  pick = BlockReduce(pick, Min{}, sh.i32);
  last = BlockReduce(last, Max{}, sh.i32);
  if (threadIdx.x == 0) p.tokens[blockIdx.x] = pick < n ? pick : last;
}

}  // namespace

cudaError_t SampleRows(const SampleRowsParams& p, cudaStream_t stream) {
  if (p.num_rows == 0) return cudaSuccess;
  const cudaError_t e =
      cudaFuncSetAttribute(SampleRowsKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kHistBytes));
  if (e != cudaSuccess) return e;
  LaunchDependent(SampleRowsKernel, p.num_rows, kThreads, kHistBytes, stream, p);
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
