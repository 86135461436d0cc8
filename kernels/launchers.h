// Host-side entry points of the CUDA kernels. Plain C++: the backend (compiled by the host
// compiler) calls these; each launches on `stream` and returns the launch's cudaError_t.
// Pointers are device pointers; matrices are row-major; "rows" index tokens.
//
// Activations are fp32. A matrix product with bf16 weights takes its input as bf16 in one of two
// forms (Bf16Activation), by the backend's precision: exact, the "split pair" bf16 [2, rows, k],
// hi = bf16(x) in the first rows and lo = bf16(x - hi) in the next, so that one bf16 tensor-core
// GEMM over 2*rows rows (the weights read once) followed by CombineSplit keeps ~16 mantissa bits
// of the activations (x = hi + lo to 2^-17 relative); bf16, hi alone [rows, k] (8 bits, half
// the tensor-core work). Kernels that produce a GEMM's input write that form directly.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace xlserve::kernels {

// Storage type of a weight matrix or of the recurrent state.
enum class WeightType { kF32, kBF16 };
using StateType = WeightType;

// The bf16 form of an activation [rows, k] that a product with bf16 weights reads next: with
// `pair`, the split pair [2, rows, k]; without, bf16(x) [rows, k]. Null data: none is needed.
struct Bf16Activation {
  void* data = nullptr;
  bool pair = true;
};

// out[r, :] = table[ids[r], :] as fp32. table: [vocab, d].
cudaError_t EmbeddingGather(const void* table, WeightType type, const int32_t* ids, int rows, int d, float* out,
                            cudaStream_t stream);

// StreamGemm (gemm_stream.cu, sm_90a): out [slices, cols, n] fp32, plane s = x[:, slice s of
// k] · w[:, slice s of k]ᵀ, for x bf16 [cols, k] and w bf16 [n, k] (16-byte aligned), the
// k-slices being contiguous runs of 64-wide k-blocks. `width` weight rows per block. `narrow`:
// the kernel for at most kStreamGemmNarrowMaxCols rows (gemm_stream_narrow.cu), with `stages`
// shared-memory stages a block (one of kStreamGemmNarrowTilings).
struct StreamGemmConfig {
  int width = 0;  // 0: not the stream GEMM
  int slices = 1;
  bool narrow = false;
  int stages = 0;
};
constexpr int kStreamGemmMaxCols = 192;
constexpr int kStreamGemmMaxSlices = 4;
// 176: the widest that the SwiGLU epilogue takes (whole pairs of 8-row groups) and that covers
// the 7B up projection (21888 rows) in one wave of 132 SMs.
constexpr int kStreamGemmWidths[] = {64, 96, 128, 168, 176};
constexpr int kStreamGemmNarrowMaxCols = 32;
struct StreamGemmTiling {
  int width, stages;
};
// The narrow kernel's tilings worth timing (H200, 7B shapes, 4-16 rows: each was the fastest of
// one shape at one row count among widths 64-256 and 4-12 stages).
constexpr StreamGemmTiling kStreamGemmNarrowTilings[] = {{64, 8}, {64, 12}, {128, 6}, {128, 8}, {192, 6}};
// Whether the running GPU executes it (sm_90 with this build's sm_90a code); asked once.
bool StreamGemmAvailable();
// Whether the shape is one it computes: 1..kStreamGemmMaxCols rows, n even, k >= 64, k % 8 == 0.
bool StreamGemmSupports(int n, int k, int cols);
// The configurations worth timing for the shape on `sms` SMs (about one wave of blocks; for at
// most kStreamGemmNarrowMaxCols rows also every narrow tiling and k-slicing); empty when it does
// not apply.
std::vector<StreamGemmConfig> StreamGemmCandidates(int n, int k, int cols, int sms);
// Whether `config` computes the shape (StreamGemm refuses the others).
bool StreamGemmRuns(StreamGemmConfig config, int n, int k, int cols);
// With `bias` ([n] fp32; one k-slice only) the plane holds the product plus the bias, the bits
// of CombineSplit over the plane with that bias.
cudaError_t StreamGemm(StreamGemmConfig config, const void* w, int n, int k, const void* x, int cols, const float* bias,
                       float* out, cudaStream_t stream);
// StreamGemm's narrow configurations, unchecked (StreamGemm checks, then calls it).
cudaError_t StreamGemmNarrow(StreamGemmConfig config, const void* w, int n, int k, const void* x, int cols,
                             const float* bias, float* out, cudaStream_t stream);

// The FFN's up projection stores its weight rows as up_gate and up interleaved in groups of
// kSwiGluGroup (rows 16 q .. 16 q + 7: up_gate rows 8 q ..; rows 16 q + 8 .. + 15: up rows 8 q ..)
// where ffn % kSwiGluGroup == 0, so that one GEMM tile holds both halves of its FFN columns.
constexpr int kSwiGluGroup = 8;
// Where that GEMM's output (n = 2 ffn interleaved columns) goes when SwiGLU is its epilogue:
// act[r, c] = silu(g) * u with g, u the product's up_gate and up values of FFN column c plus
// their bias (nullable, interleaved like the rows), formed as SwiGlu forms them from one plane.
// out fp32 [cols, ffn] (nullable) and bf16 (the bf16 precision's single form).
struct SwiGluEpilogue {
  const float* bias = nullptr;
  float* out = nullptr;
  Bf16Activation bf16;
};
// StreamGemm with that epilogue: `width` a multiple of 2 kSwiGluGroup, n % 16 == 0, and one
// k-slice, or any of a narrow configuration (its slices meet in a cluster).
bool StreamGemmSwiGluSupports(StreamGemmConfig config, int n, int k, int cols);
cudaError_t StreamGemmSwiGlu(StreamGemmConfig config, const void* w, int n, int k, const void* x, int cols,
                             const SwiGluEpilogue& epilogue, cudaStream_t stream);
// The narrow configurations of StreamGemmSwiGlu, unchecked (StreamGemmSwiGlu checks, then calls it).
cudaError_t StreamGemmNarrowSwiGlu(StreamGemmConfig config, const void* w, int n, int k, const void* x, int cols,
                                   const SwiGluEpilogue& epilogue, cudaStream_t stream);

// out[i, :] = x[rows[i], :], x: [*, d].
cudaError_t GatherRows(const float* x, const int32_t* rows, int count, int d, float* out, cudaStream_t stream);

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w (+ b), b may be null; x, out: [rows, d]; w, b
// fp32. `bf16` (data nullable): the same values in bf16 form. `out` may be null when bf16.data
// is not (a product that reads only the bf16 form is next); so for SwiGlu and HeadNormGate.
cudaError_t RmsNorm(const float* x, const float* w, const float* b, int rows, int d, float eps, float* out,
                    Bf16Activation bf16, cudaStream_t stream);
// A GEMM's output left for the pass that reads it next to add up: `planes` partial products
// [planes, rows, n], summed in plane order (then the bias, then anything accumulated into).
// A split-pair GEMM leaves hi and lo for each of planes / 2 slices of k, a bf16 one a plane per
// slice; one plane is a plain product.
struct GemmPlanes {
  const float* t = nullptr;
  int planes = 0;
};
// The same after folding a pending residual into x: x[r, c] = Σ_p t[p, r, c] (+ t_bias[c]) +
// x[r, c], in CombineSplit's order (so the bits match CombineSplit with accumulate, then
// RmsNorm). t: a GEMM's output planes [planes, rows, d]; saves that pass over x.
cudaError_t ResidualRmsNorm(float* x, const GemmPlanes& t, const float* t_bias, const float* w, const float* b,
                            int rows, int d, float eps, float* out, Bf16Activation bf16, cudaStream_t stream);

// y[r, n] = sum_k x[r, k] w[n, k] (+ bias[n]) (+ y[r, n] when accumulate) for fp32 weights
// and rows <= kGemvMaxRows: one pass over w. x: [rows, k], w: [n, k], y: [rows, n].
constexpr int kGemvMaxRows = 8;
cudaError_t GemvSmallRows(const float* x, const float* w, const float* bias, int rows, int n, int k, bool accumulate,
                          float* y, cudaStream_t stream);
// The same for bf16 weights, with x fp32 (exact precision: no split pair) or bf16 (x_bf16: the
// bf16 precision's Bf16Activation without pair); needs k % 8 == 0.
cudaError_t GemvBf16SmallRows(const void* x, bool x_bf16, const void* w, const float* bias, int rows, int n, int k,
                              bool accumulate, float* y, cudaStream_t stream);
// The FFN's up projection through it with SwiGLU (SwiGlu's maths and bits) in the same launch:
// w [n = 2 ffn, k] interleaved in groups of kSwiGluGroup (n % 16 == 0); writes the activation
// [rows, ffn] to act (fp32, nullable) and act_bf16 (when it has data).
cudaError_t GemvBf16SwiGlu(const void* x, bool x_bf16, const void* w, const float* bias, int rows, int n, int k,
                           float* act, Bf16Activation act_bf16, cudaStream_t stream);

// y[r, c] = Σ_p t[p, r, c] (+ bias[c]) (+ y[r, c] when accumulate): the planes of a GEMM
// (GemmPlanes). t: [planes, rows, n], y: [rows, n], bias fp32 (nullable).
cudaError_t CombineSplit(const GemmPlanes& t, const float* bias, int rows, int n, bool accumulate, float* y,
                         cudaStream_t stream);

// dst[dst_rows[i], :] = (src[src_rows[i], a : a + a_len], src[src_rows[i], b : b + b_len]) for
// i < count: keeps a verify pass's mLSTM inputs for the commit. dst row stride a_len + b_len.
cudaError_t GatherRowSegments(const float* src, int64_t src_stride, int a, int a_len, int b, int b_len,
                              const int32_t* src_rows, const int32_t* dst_rows, int count, float* dst,
                              cudaStream_t stream);

// The bf16 form of x (count values): the GEMM input of a matrix that reads an activation no
// kernel has converted yet.
cudaError_t ToBf16Activation(const float* x, int64_t count, Bf16Activation bf16, cudaStream_t stream);

// y[r, c] += bias[c], y: [rows, n] (the fp32 cuBLAS path).
cudaError_t AddBias(float* y, const float* bias, int rows, int n, cudaStream_t stream);

// out[r] = the index of the largest of x[r, 0..n) (lowest index among ties; -1 when none is
// finite and above -inf, as engine/sampling's Argmax). x: [rows, n].
cudaError_t ArgmaxRows(const float* x, int rows, int n, int32_t* out, cudaStream_t stream);

// One row of SampleRows: where its logits are, its request's SamplingParams (valid), its
// draw and its penalty entries.
struct SampleRowSpec {
  int32_t logits_row;  // row of SampleRowsParams::logits
  float temperature;   // 0: greedy
  int32_t top_k;       // 0 or >= vocab: off
  float top_p;         // 1: off
  float min_p;         // 0: off
  float repetition_penalty;
  float presence_penalty;
  float frequency_penalty;
  int32_t penalty_begin;  // entries [penalty_begin, penalty_begin + penalty_count) of
  int32_t penalty_count;  // SampleRowsParams::penalties
  uint64_t seed;
  uint64_t draw_index;  // the Philox draw a non-greedy row takes
};
// A distinct token of a request's prompt + output and its count in the output: what the
// penalties of engine/sampling/penalties.h need to know about it.
struct PenaltyEntry {
  int32_t token;
  int32_t generated;
};
struct SampleRowsParams {
  const float* logits;  // [*, vocab]
  int vocab;
  const SampleRowSpec* rows;  // [num_rows]
  int num_rows;
  const PenaltyEntry* penalties;  // each token at most once within a row's entries
  float* penalised;  // scratch [num_rows, vocab]: the penalised row, later the probabilities
  double* weights;   // scratch [num_rows, vocab]
  int32_t* tokens;   // [num_rows]: the token, -1 when the row has no usable logit
};
// tokens[r] = what Sampler::Sample (engine/sampling/sampler.h) returns for logits row
// rows[r].logits_row with its stream at draw rows[r].draw_index, the history given by the
// penalty entries (sample_rows.cu states the algorithm and where it may differ).
cudaError_t SampleRows(const SampleRowsParams& p, cudaStream_t stream);

// x[i] = cap * tanh(x[i] / cap).
cudaError_t SoftCap(float* x, int64_t count, float cap, cudaStream_t stream);

// out[r, c] = silu(g[r, c]) * g[r, ffn + c] with g = Σ_p gu[p] (+ bias): the fused [rows,
// 2 * ffn] output of (up_gate; up), in one plane or as a GEMM's planes, formed as CombineSplit
// forms it, so the GEMM's combine pass is skipped. With `interleaved` the columns (and bias) are
// in kSwiGluGroup groups (the up matrix's row order) instead. out: [rows, ffn]; `bf16` as for
// RmsNorm.
cudaError_t SwiGlu(const GemmPlanes& gu, const float* bias, bool interleaved, int rows, int ffn, float* out,
                   Bf16Activation bf16, cudaStream_t stream);

// Per row and head over its head_dim values g of h: g <- LayerNorm(g) (biased variance, eps)
// * w (+ b), then * sigmoid(o). h: [.., heads * head_dim] (stride heads * head_dim); o: row
// stride o_stride; w, b fp32 [heads * head_dim]. Output row r reads row src_rows[r] of h and o
// (row r when src_rows is null). Writes out [rows, heads * head_dim] (unless null) and `bf16`
// (unless its data is null).
cudaError_t HeadNormGate(const float* h, const float* o, int64_t o_stride, const int32_t* src_rows, const float* w,
                         const float* b, int rows, int heads, int head_dim, float eps, float* out, Bf16Activation bf16,
                         cudaStream_t stream);

// Where each head's recurrent state lives for one layer. The pool holds num_slots slots of
// slot_elems elements of `type`; a head's C [dqk, dv] starts at c_offset + head * head_elems
// and its n [dqk] follows C. m (fp32) lives at m[slot * m_slot_stride + m_offset + head *
// m_head_stride]: inside the pool for fp32 state, in a separate fp32 array for bf16 state
// (rounding the log-scale stabiliser to bf16 would rescale the whole state).
struct MlstmStateRef {
  void* pool;
  StateType type;
  int64_t slot_elems;
  int64_t c_offset;
  int64_t head_elems;
  float* m;
  int64_t m_slot_stride;
  int64_t m_offset;
  int64_t m_head_stride;
};

// One mLSTM layer over each sequence's tokens (the recurrence of DESIGN §3; see
// mlstm_step.cu and mlstm_recurrent.cu). q, k, v and the gate pre-activations are column
// slices of one [rows, proj_stride] buffer; gates are soft-capped here when gate_cap > 0.
struct MlstmParams {
  const float* q;      // [rows, heads * dqk]
  const float* k;      // [rows, heads * dqk]
  const float* v;      // [rows, heads * dv]
  const float* igate;  // [rows, heads]
  const float* fgate;  // [rows, heads]
  int64_t proj_stride;           // row stride of q, k, v, igate, fgate
  float* h;                      // [rows, heads * dv], row stride heads * dv; null: state only
  MlstmStateRef state;
  const int32_t* seq_row_begin;  // [num_seqs + 1]: sequence s owns rows [begin[s], begin[s+1])
  const int32_t* seq_slot;       // [num_seqs]: the state slot of each sequence
  // [num_seqs] (nullable): sequence s owns rows [begin[s], end[s]) instead; the rows of
  // different sequences need not be adjacent then (the commit of deferred inputs).
  const int32_t* seq_row_end = nullptr;
  // [num_seqs] (nullable): a sequence with a non-zero entry computes h from its state but leaves
  // the state unwritten (speculative verify, DESIGN §4).
  const int32_t* seq_defer = nullptr;
  // A pending commit fused into a verify (pend_k null: none): before its own rows, sequence s
  // applies rows [pend_begin[s], pend_end[s]) of pend_k, pend_v, pend_igate, pend_fgate (row
  // stride pend_stride; the store of deferred inputs) to its state, and writes it back.
  const float* pend_k = nullptr;
  const float* pend_v = nullptr;
  const float* pend_igate = nullptr;
  const float* pend_fgate = nullptr;
  int64_t pend_stride = 0;
  const int32_t* pend_begin = nullptr;
  const int32_t* pend_end = nullptr;
  // Where a verify keeps its own rows' inputs for their commit (keep_k null: it does not): token t
  // of sequence s goes to row keep_begin[s] + t of keep_k, keep_v, keep_igate, keep_fgate (row
  // stride pend_stride): MlstmVerifyPrep writes k and the gates, MlstmVerify v.
  float* keep_k = nullptr;
  float* keep_v = nullptr;
  float* keep_igate = nullptr;
  float* keep_fgate = nullptr;
  const int32_t* keep_begin = nullptr;
  // A verify's per-(sequence, head) factors, [num_seqs, heads, kVerifyCoefStride]: written by
  // MlstmVerifyPrep, read by MlstmVerify (VerifyCoef says where each lies).
  float* verify_coef = nullptr;
  // Scratch that MlstmChunkwise needs (null otherwise): chunk_p [rows, heads, kChunkTokens] (each
  // row's weighted scores against the keys of its chunk), chunk_gates [rows, heads,
  // kChunkGateFields], and chunk_carry [ChunkCarrySlots(rows), heads, dqk * (dv + 1)] (C, then
  // n, in fp32 at each boundary between the chunks of a sequence).
  float* chunk_p = nullptr;
  float* chunk_gates = nullptr;
  float* chunk_carry = nullptr;
  // [num_seqs], nullable: 1 where the slot holds the zero state of a reset (the chunkwise kernels
  // then skip reading C and n, and the products with them, for the sequence's first chunk).
  const int32_t* seq_fresh = nullptr;
  bool all_fresh = false;  // every seq_fresh entry is 1 (known on the host)
  // The chunkwise products' precision: operands as bf16 hi + lo pairs, fp32 accumulation (the
  // bf16 precision), or fp32-accurate 3xTF32 (exact); chunk_mma.cuh.
  bool bf16_products = false;
  int num_seqs;
  int heads;
  int dqk;
  int dv;
  float gate_cap;  // <= 0: none
  float eps;
};

// Every sequence has exactly one row (row s is sequence s): the decode step, bandwidth-bound.
// Needs MlstmStepSupports(dqk, dv, type). Where its kernel cannot write n and m itself (a grid
// of more than one wave, mlstm_step.cu) it leaves them and sets *nm_left: the caller launches
// MlstmNormalizer(p) after it, on whichever stream (mlstm_common.cuh).
bool MlstmStepSupports(int dqk, int dv, StateType type);
cudaError_t MlstmStep(const MlstmParams& p, bool* nm_left, cudaStream_t stream);
// Advances n and m of every (sequence, head) over the sequence's rows and writes them to the
// state; grid (num_seqs, heads), one block each. Launch after the C kernel of the same layer
// (mlstm_common.cuh says why it is a kernel of its own).
cudaError_t MlstmNormalizer(const MlstmParams& p, cudaStream_t stream);

// Any number of tokens per sequence, one at a time with C held in registers (prefill, and
// verify or commit where the tiled kernels below do not apply). With h null it only advances
// the state. Needs MlstmRecurrentSupports(dqk).
bool MlstmRecurrentSupports(int dqk);
cudaError_t MlstmRecurrent(const MlstmParams& p, cudaStream_t stream);

// The same recurrence in chunks of kChunkTokens tokens (mlstm_chunkwise.cu): for prefill, where
// the per-token form is latency-bound. No deferred sequences; h non-null; `max_tokens`: the most
// rows of any sequence. Needs MlstmChunkwiseSupports(dqk) (dqk a multiple of 4).
constexpr int kChunkTokens = 128;
constexpr int kChunkGateFields = 8;
// Carry slots for a pass of `rows` rows: the state entering chunk c >= 1 of a sequence, whose
// chunk starts at row cs, takes slot cs / kChunkTokens - 1; distinct, since the chunks before
// them are disjoint runs of kChunkTokens rows.
inline int ChunkCarrySlots(int rows) { return rows / kChunkTokens + 1; }
bool MlstmChunkwiseSupports(int dqk);
cudaError_t MlstmChunkwise(const MlstmParams& p, int max_tokens, cudaStream_t stream);
// The same for new prompts only: every sequence of p from a reset slot (p.all_fresh) and at most
// kChunkTokens tokens (mlstm_fresh_chunk.cuh), as one launch of independent blocks that needs
// none of the chunkwise scratch. MlstmStepBesideFresh runs those blocks inside the step kernel's
// launch for `step`, spread among its own (both subsets of one layer, disjoint slots), leaving
// the step's n and m as MlstmStep does (*nm_left).
bool MlstmFreshChunkApplies(const MlstmParams& p, int max_tokens);
cudaError_t MlstmFreshChunk(const MlstmParams& p, int max_tokens, cudaStream_t stream);
cudaError_t MlstmStepBesideFresh(const MlstmParams& step, const MlstmParams& fresh, int fresh_max_tokens,
                                 bool* nm_left, cudaStream_t stream);

// Speculative verify and commit (DESIGN §4) with the step kernel's tiling; both need
// MlstmStepSupports(dqk, dv, type) and at most kMaxVerifyTokens rows per sequence.
constexpr int kMaxVerifyTokens = 8;
// Where a verify's factors lie in its record of kVerifyCoefStride floats per (sequence, head)
// (mlstm_verify_prep.cu has the maths): the pending commit's decay a_A and weights b_{As}, then
// per verified token t the decay a_t of the committed state and the denominator, then the
// weighted dots b_{ts} q̂_t·k_s (s <= t).
struct VerifyCoef {
  static constexpr int kCommitDecay = 0;
  static constexpr int kCommitWeight = 1;
  static constexpr int kDecay = kCommitWeight + kMaxVerifyTokens;
  static constexpr int kDenom = kDecay + kMaxVerifyTokens;
  static constexpr int kDots = kDenom + kMaxVerifyTokens;  // [t][s] at kDots + t * kMaxVerifyTokens + s
};
constexpr int kVerifyCoefStride = VerifyCoef::kDots + kMaxVerifyTokens * kMaxVerifyTokens;
// The verify's factors into p.verify_coef, and, where a commit is pending, n and m advanced by it
// (written to the state): grid (num_seqs, heads); before MlstmVerify on the same stream.
// `max_tokens`: the most rows of any sequence.
cudaError_t MlstmVerifyPrep(const MlstmParams& p, int max_tokens, cudaStream_t stream);
// h of every row from the committed state, which stays unwritten apart from a pending commit's
// C (mlstm_verify.cu); `max_tokens`: the most rows of any sequence.
cudaError_t MlstmVerify(const MlstmParams& p, int max_tokens, cudaStream_t stream);
// Advances each state by all of its sequence's rows in one update (mlstm_commit.cu).
cudaError_t MlstmCommit(const MlstmParams& p, cudaStream_t stream);

}  // namespace xlserve::kernels
