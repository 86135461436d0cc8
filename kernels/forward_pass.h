// ForwardPass: the forward pass of engine/cpu/cpu_backend.cc on the GPU, enqueued on one stream
// (a mixed step's prompt mLSTM forks onto a second) for a batch that batch_plan.h planned.
// Activations and state maths are fp32; the state is stored in fp32 or bf16. Matrix products
// with bf16 weights take the activations in the precision's bf16 form (launchers.h): exact, the
// split pair (the products keep ~fp32 accuracy); bf16, bf16(x) alone (half the tensor-core
// work, fp32 accumulation). One or two rows (decode at batch 1; up to 8 rows for small
// matrices) go through the GEMV, which multiplies the fp32 activations exactly (exact) or the
// bf16 form (bf16); more rows through one bf16 tensor-core GEMM in cuBLASLt with a timed choice
// of algorithm per shape (gemm_lt.h), the weights read once. fp32 weights go through the
// small-row GEMV (decode) or SGEMM without TF32, in either precision. The chunkwise mLSTM's
// products run 3xTF32, or bf16 pairs in the bf16 precision on bf16 weights (chunk_mma.cuh).
// Per block: RMSNorm -> stacked q/k/v/o/ĩ/f̃ GEMM -> mLSTM (step kernel when a sequence has one
// token, verify kernel for deferred sequences, else the chunkwise kernel; gate soft cap inside)
// -> head norm * sigmoid(o) -> out_proj GEMM added to the residual -> RMSNorm -> stacked
// up_gate/up GEMM -> SwiGLU -> down GEMM added to the residual. A GEMM's planes (hi and lo of a
// split pair, k-slices) are added up by the pass that reads them next (the RMSNorm that follows a
// residual add, SwiGLU), not by a pass of its own.
// Self-speculation (docs/design.md §4): MTP heads run on the residual stream after the trunk's
// first trunk_layers blocks, gathered densely for the sequences that ask for them; a deferred
// sequence's k, v, ĩ, f̃ rows go to the store of deferred_commits.h, and a commit recorded for
// its slot is fused into its verify or applied by ApplyCommits.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_config.h"
#include "kernels/batch_plan.h"
#include "kernels/deferred_commits.h"
#include "kernels/device_weights.h"
#include "kernels/gemm_lt.h"
#include "kernels/launchers.h"
#include "kernels/scratch.h"
#include "kernels/side_stream.h"
#include "kernels/stage_profiler.h"
#include "kernels/state_pool.h"

namespace xlserve::kernels {

// A block's intermediates, and a head's residual stream.
struct BlockScratch {
  explicit BlockScratch(uint64_t* moves)
      : head_x(moves), xn(moves), proj(moves), h(moves), hg(moves), gu(moves), act(moves), gemm_planes(moves),
        bf16_input(moves), bf16_act(moves), normed(moves) {}
  ScratchArray<float> head_x;  // [head rows, d]
  ScratchArray<float> xn, proj, h, hg, gu, act;
  ScratchArray<float> gemm_planes;
  ScratchArray<std::byte> bf16_input;
  // The up projection's SwiGLU epilogue writes the activation's bf16 form here: its GEMM is
  // still reading bf16_input.
  ScratchArray<std::byte> bf16_act;
  ScratchArray<float> normed;  // rows being unembedded, after out_norm
};

// The pass's device buffers; `moves` changes whenever one of them moves (DecodeGraphs).
struct ForwardScratch {
  uint64_t moves = 0;
  ScratchArray<int32_t> ints{&moves};  // ForwardPlan::packed
  // CommitPlan::packed: read only by ApplyCommits, which never runs inside a graph, so its moves
  // stale none. Counted with the others, the first commit applied on its own to more sequences
  // than before (a batch leaving speculation) made every captured step run eagerly and be
  // captured again inside live steps.
  uint64_t commit_moves = 0;
  ScratchArray<int32_t> commit_ints{&commit_moves};
  // The store of deferred inputs (DeferredStoreLayout): kept across steps; its size changes only
  // with the number of slots.
  ScratchArray<float> deferred_store{&moves};
  ScratchArray<float> verify_coef{&moves};     // [deferred sequences, heads, kVerifyCoefStride]
  ScratchArray<float> logits{&moves};          // [picked rows + heads x the heads' picked rows, vocab]
  ScratchArray<int32_t> argmax{&moves};        // [picked rows + head rows]
  ScratchArray<float> x{&moves};               // the residual stream [rows, d]
  ScratchArray<float> z{&moves};               // what the heads read [head rows, d]
  BlockScratch trunk{&moves};                  // the trunk's blocks and unembedding, and heads run in turn
  ScratchArray<float> chunk_p{&moves}, chunk_gates{&moves}, chunk_carry{&moves};  // MlstmParams says
  ScratchArray<float> sel{&moves};             // the unembedded rows: trunk's, then heads'
};

// A planned forward's device buffers, fetched before any kernel so that a graph capture never
// allocates.
struct PassBuffers {
  const int32_t* ints = nullptr;  // the upload of ForwardPlan::packed
  Indices idx;                    // the trunk's view of it
  float* store = nullptr;
  float* logits = nullptr;
  float* head_logits = nullptr;  // within logits, after the picked rows; null without heads
  int head_picked = 0;            // rows of head_logits: heads x the heads' picked rows
  int32_t* argmax = nullptr;  // [picked rows] then [head][the heads' picked rows]
  // idx.verify_coef holds a record set for the trunk, then one per MTP head; this is one set's size.
  size_t verify_coef_per_head = 0;
};

class ForwardPass {
 public:
  // Everything given must outlive the pass; `states` may be reallocated in between calls.
  ForwardPass(const ModelConfig& cfg, const DeviceWeights* dev, LtGemm* lt, cublasHandle_t cublas,
              cudaStream_t stream, const StatePool* states, Precision precision, const DeferredStoreLayout& store,
              StageProfiler* profiler);

  uint64_t scratch_moves() const { return scratch_.moves; }
  int num_mtp_heads() const { return cfg_.mtp ? cfg_.mtp->num_heads - 1 : 0; }
  // Whether the tiled mLSTM kernels (step, verify, fused commit) run this model's heads.
  bool Tiled() const;

  // Uploads the plan's index arrays and fetches every buffer Enqueue uses.
  absl::StatusOr<PassBuffers> Prepare(const ForwardPlan& plan);
  // The pass's kernels on the stream, nothing else (a graph can capture it): embedding, blocks,
  // heads, unembedding, and the argmax of every picked row and head row.
  absl::Status Enqueue(const ForwardPlan& plan, const PassBuffers& b);
  // The commit kernel over `plan`'s slots (nothing when empty).
  absl::Status ApplyCommits(const CommitPlan& plan);

 private:
  // Where q, k, v, ĩ, f̃ sit in a row of a buffer that feeds the mLSTM kernels.
  struct MlstmColumns {
    int q, k, v, igate, fgate;
    int64_t stride;
  };
  // A block's last product (down), left uncombined for the next block's first RMSNorm to fold
  // into x (ResidualRmsNorm); t.t null when there is none.
  struct PendingResidual {
    GemmPlanes t;
    const float* bias = nullptr;
    int n = 0;
  };

  MlstmColumns ProjMlstmColumns() const;
  MlstmColumns StoreColumns() const;
  absl::StatusOr<float*> DeferredStore();
  MlstmParams LayerParams(int layer, const float* base, const MlstmColumns& c, float* h, const int32_t* row_begin,
                          const int32_t* slots, int num_seqs) const;
  MlstmParams SubsetParams(int layer, const float* base, const MlstmColumns& c, float* h, const DeviceSubset& s) const;
  absl::Status Unembed(const float* sel, int n, float* logits);
  // How a pass's MTP heads run: in turn on the pass's stream (no lanes), or side by side on
  // `lanes` lanes that the pass's stream joins before its end.
  struct HeadsLaunch {
    int lanes = 0;
    bool unembedded = false;  // the lanes unembedded their rows and took their argmax
  };
  absl::StatusOr<HeadsLaunch> StartMtpHeads(const IndexPlan& plan, const int32_t* at, const PassBuffers& b,
                                            int trunk_picked, const float* z, float* sel);
  absl::Status JoinMtpHeads(const HeadsLaunch& launch);
  // logits and argmax of sel's rows [first, first + n) into their places in b.
  absl::Status UnembedRows(const float* sel, int first, int n, const PassBuffers& b);
  // Head `head` (1-based) over z's `rows` rows into its `picked` rows of sel, on stream_ with
  // block_'s buffers.
  absl::Status RunHead(int head, int rows, int picked, const Indices& idx, const float* z, float* sel);
  bool HeadsSideBySide(int rows, const Indices& idx) const;
  // Whether Linear over `rows` rows of w takes a GEMV (no cuBLAS handle, no GEMM workspace).
  static bool GemvOnly(int rows, const DeviceMatrix& w);
  // bf16_products: the chunkwise products in bf16 pairs, as where q, k and v came from a
  // projection that took bf16 activations (the bf16 precision on bf16 weights).
  absl::Status RunMlstm(int layer, int rows, const float* proj, float* h, const Indices& idx, bool bf16_products);
  absl::Status AdvanceNmBeside(const MlstmParams& step, const char* stage);
  absl::Status FlushResidual(int rows, PendingResidual* residual, float* x);
  // The rows of a block's output that anything reads, where fewer than all: the block's tail
  // (head norm onwards) runs on them alone, into `x` (their residual stream, in their order).
  struct ReadRows {
    const int32_t* rows = nullptr;  // [count] of the block's rows
    int count = 0;
    float* x = nullptr;
  };
  // `read` null: every row goes on.
  absl::Status RunBlock(const DeviceBlock& w, int layer, int rows, const Indices& idx, PendingResidual* residual,
                        float* x, const ReadRows* read = nullptr);
  // act [rows, ffn] = silu(up_gate(xn)) * up(xn) (and its bf16 form); returns the bf16 form the
  // down projection reads: `bf16`, or another buffer where the GEMM's epilogue wrote it.
  absl::StatusOr<Bf16Activation> UpSwiGlu(const DeviceBlock& w, const float* xn, const Bf16Activation& bf16, int rows,
                                          float* act);
  absl::Status Linear(const float* x, const Bf16Activation& x_bf16, int rows, const DeviceMatrix& w, const float* bias,
                      bool accumulate, float* y);
  absl::StatusOr<GemmPlanes> LinearUncombined(const float* x, const Bf16Activation& x_bf16, int rows,
                                              const DeviceMatrix& w, const float* bias, bool accumulate, float* y);
  static bool UsesGemv(int rows, const DeviceMatrix& w);
  bool Bf16InputOnly(int rows, const DeviceMatrix& w) const;
  float* Fp32InputFor(int rows, const DeviceMatrix& w, float* buffer) const;
  absl::StatusOr<Bf16Activation> Bf16Input(int rows);

  const ModelConfig& cfg_;
  const DeviceWeights* dev_;
  LtGemm* lt_;
  cublasHandle_t cublas_;
  cudaStream_t stream_;
  const StatePool* states_;
  Precision precision_;
  ProjColumns cols_;
  DeferredStoreLayout store_;
  StageProfiler* profiler_;
  ForwardScratch scratch_;
  // The buffers RunBlock and what it calls use: scratch_.trunk, or a side head's while it runs.
  BlockScratch* block_ = &scratch_.trunk;
  SideStream side_;  // the prompts' mLSTM of a mixed step
  // The normalisers of steps past one wave (AdvanceNmBeside), joined before the next block and
  // after the last.
  SideStream nm_side_;
  bool nm_forked_ = false;
  // The heads when they run side by side (StartMtpHeads): a stream and buffers each, the buffers
  // counted in scratch_.moves.
  struct HeadLane {
    explicit HeadLane(uint64_t* moves) : scratch(moves) {}
    SideStream stream;
    BlockScratch scratch;
  };
  std::vector<std::unique_ptr<HeadLane>> head_lanes_;
};

}  // namespace xlserve::kernels
