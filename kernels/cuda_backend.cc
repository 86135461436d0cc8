// CudaBackend: the forward pass of engine/cpu/cpu_backend.cc on the GPU with the kernels of
// this directory. Activations and state maths are fp32; the state is stored in fp32 or bf16.
// Matrix products with bf16 weights take the activations in the precision's bf16 form
// (launchers.h): exact, the split pair (the products keep ~fp32 accuracy); bf16, bf16(x) alone
// (half the tensor-core work, fp32 accumulation). One or two rows (decode at batch 1; up to 8
// rows for small matrices) go through the GEMV, which multiplies the fp32 activations exactly
// (exact) or the bf16 form (bf16); more rows through one bf16 tensor-core GEMM in cuBLASLt with
// a timed choice of algorithm per shape (gemm_lt.h), the weights read once. fp32 weights
// through the small-row GEMV (decode) or SGEMM without TF32, in either precision.
// Per block: RMSNorm -> stacked q/k/v/o/ĩ/f̃ GEMM -> mLSTM (step kernel when every sequence
// has one token, else the chunkwise kernel; gate soft cap inside) -> head norm * sigmoid(o) ->
// out_proj GEMM added to the residual -> RMSNorm -> stacked up_gate/up GEMM -> SwiGLU -> down
// GEMM added to the residual. A GEMM's planes (hi and lo of a split pair, k-slices) are added up
// by the pass that reads them next (the RMSNorm that follows a residual add, SwiGLU), not by a
// pass of its own.
// Self-speculation (DESIGN §4): MTP heads run on the residual stream after the trunk's first
// trunk_layers blocks, gathered densely for the sequences that ask for them. A deferred
// forward leaves its slots' states unwritten and keeps each layer's k, v, ĩ, f̃ rows in one of
// two halves of a per-slot store. Commit() only records how many of them to apply: the slot's
// next verify applies them inside its own pass over the state (fused commit: one read and one
// write of C per speculative step), and anything else that needs the state (a plain step,
// ReadSlot) applies them first with the commit kernel.
// Steps that return no logits (tokens_only; the same tokens count and flags for every sequence)
// replay CUDA graphs (DecodeGraphs); their tokens come back as a GPU argmax or, for sequences
// that ask, as a token sampled on the GPU after the graph (sample_rows.cu) instead of the logits.
#include "kernels/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <string>
#include <vector>

#include "engine/backend_validation.h"
#include "engine/state_layout.h"
#include "base/status_macros.h"
#include "kernels/cuda_check.h"
#include "kernels/device_weights.h"
#include "kernels/forward_support.h"
#include "kernels/gemm_lt.h"
#include "kernels/launchers.h"
#include "kernels/sample_plan.h"
#include "kernels/snapshot_pool.h"
#include "kernels/state_pool.h"

namespace xlserve::kernels {
namespace {

// Rows up to which large bf16 matrices go through the fp32 GEMV: beyond, its FMAs (8 per
// weight and row) fall behind the weight stream (measured on an H200 with the 7B shape: 62% of
// the HBM floor at batch 1, 35% at batch 8, where the cuBLAS split-pair GEMM gives 54%).
// Matrices of at most kSmallMatrixElems take it up to kGemvMaxRows rows: there a step is bound
// by latency, and one kernel beats a GEMM plus its combine (small models, verify passes).
constexpr int kBf16GemvMaxRows = 2;
constexpr int64_t kSmallMatrixElems = int64_t{1} << 22;

// Tokens a deferred forward may carry per sequence (1 + the most drafts): sizes the per-slot
// store of verify inputs.
constexpr int kMaxDeferredTokens = kMaxVerifyTokens;

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<const ModelWeights> weights, int device, StateType state_type, Precision precision)
      : weights_(std::move(weights)),
        device_(device),
        precision_(precision),
        layout_(StateLayout::ForModel(weights_->config)),
        cols_(ProjColumns::ForModel(weights_->config)),
        states_(layout_, state_type),
        snapshots_(std::make_unique<SnapshotPool>(&states_)) {}

  ~CudaBackend() override {
    snapshots_.reset();
    dev_.reset();
    lt_.reset();
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  absl::Status Init() {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUBLAS_RETURN_IF_ERROR(cublasCreate(&cublas_));
    CUBLAS_RETURN_IF_ERROR(cublasSetStream(cublas_, stream_));
    CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));  // no TF32 for SGEMM
    ASSIGN_OR_RETURN(dev_, DeviceWeights::Upload(*weights_));
    ASSIGN_OR_RETURN(lt_, LtGemm::Create());
    return absl::OkStatus();
  }

  std::string_view name() const override { return "cuda"; }
  const StateLayout& state_layout() const override { return layout_; }
  Precision precision() const override { return precision_; }
  // The pool has one slot more than it reports: the padding rows of graph-replayed decode
  // steps run on it.
  int num_slots() const override { return std::max(0, states_.num_slots() - 1); }

  absl::Status AllocateSlots(int num_slots) override {
    if (num_slots < 1) return absl::InvalidArgumentError("need at least one state slot");
    graphs_.Clear();
    RETURN_IF_ERROR(states_.Allocate(num_slots + 1));
    deferred_.assign(num_slots + 1, Deferred{});
    return absl::OkStatus();
  }

  absl::Status ResetSlot(int slot) override {
    RETURN_IF_ERROR(CheckSlot(slot, -1));
    deferred_[slot] = Deferred{};
    return states_.Reset(slot, stream_);
  }

  bool SupportsSpeculation() const override { return true; }
  bool SamplesOnDevice() const override { return true; }
  int num_mtp_heads() const override {
    return weights_->config.mtp ? weights_->config.mtp->num_heads - 1 : 0;
  }
  // A fixed estimate: a verify pass reads the same weights and states as a one-token step, and
  // DESIGN §8 puts its extra GEMM rows at a few percent at small batch. (Measured end to end on
  // an H200, 7B shape, L = 2..4 at batch <= 8: 1.2-1.4x.)
  double VerifyCostRatio(int tokens) const override { return 1.0 + 0.05 * (tokens - 1); }

  absl::Status ReadSlot(int slot, std::span<float> out) const override {
    RETURN_IF_ERROR(CheckSlot(slot, static_cast<int64_t>(out.size())));
    // A reader sees the committed state: a recorded commit is applied first. (The backend
    // object itself is not const; only this call's contract is.)
    RETURN_IF_ERROR(const_cast<CudaBackend*>(this)->ApplyPendingCommits({slot}));
    return states_.Read(slot, out, stream_);
  }

  absl::Status WriteSlot(int slot, std::span<const float> in) override {
    RETURN_IF_ERROR(CheckSlot(slot, static_cast<int64_t>(in.size())));
    deferred_[slot] = Deferred{};
    return states_.Write(slot, in, stream_);
  }

  int64_t snapshot_bytes() const override { return snapshots_->bytes(); }
  absl::Status AllocateSnapshots(int device, int host) override { return snapshots_->Allocate(device, host); }
  absl::Status SaveSnapshot(int slot, SnapshotRef dst) override {
    RETURN_IF_ERROR(CheckSlot(slot, -1));
    RETURN_IF_ERROR(ApplyPendingCommits({slot}));
    return snapshots_->Save(slot, dst, stream_);
  }
  absl::Status RestoreSnapshot(SnapshotRef src, int slot) override {
    RETURN_IF_ERROR(CheckSlot(slot, -1));
    deferred_[slot] = Deferred{};
    return snapshots_->Restore(src, slot, stream_);
  }
  absl::Status CopySnapshot(SnapshotRef src, SnapshotRef dst) override { return snapshots_->Copy(src, dst); }
  int64_t FreeDeviceBytes() const override {
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return static_cast<int64_t>(free);
  }
  bool WantsWarmUp() const override { return true; }
  void SetShapeTuning(bool allowed) override { lt_->SetTuning(allowed); }

  absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) override {
    const ModelConfig& cfg = weights_->config;
    RETURN_IF_ERROR(ValidateForwardBatch(batch, num_slots(), cfg.vocab_size, cfg.mtp.has_value(), true, true));
    for (const SequenceInput& s : batch) {
      if (s.defer_commit && s.tokens.size() > kMaxDeferredTokens) {
        return absl::InvalidArgumentError("forward: a deferred sequence carries at most " +
                                          std::to_string(kMaxDeferredTokens) + " tokens, got " +
                                          std::to_string(s.tokens.size()));
      }
    }
    // A decode or verify step without logits (tokens_only; every sequence with the same tokens
    // count and flags; one token each unless verifying) replays a CUDA graph of its shape, the
    // batch padded to a power of two with sequences of token 0 on the scratch slot. Sampling
    // runs after the graph, so it does not change the shape.
    const SequenceInput& first = batch.front();
    const int len = static_cast<int>(first.tokens.size());
    bool graph_step = !profiler_.on && (len == 1 || first.defer_commit);
    for (const SequenceInput& s : batch) {
      graph_step = graph_step && s.tokens_only && static_cast<int>(s.tokens.size()) == len &&
                   s.all_logits == first.all_logits && s.mtp_heads == first.mtp_heads &&
                   s.defer_commit == first.defer_commit;
    }
    static constexpr int32_t kPadTokens[kMaxDeferredTokens] = {};
    std::vector<SequenceInput> padded;
    int bucket = 0;
    if (graph_step) {
      bucket = 1;
      while (bucket < static_cast<int>(batch.size())) bucket *= 2;
      padded.assign(batch.begin(), batch.end());
      SequenceInput pad = first;
      pad.slot = num_slots();
      pad.tokens = std::span<const int32_t>(kPadTokens, len);
      pad.sample = nullptr;
      padded.resize(bucket, pad);
    }
    const std::span<const SequenceInput> run = graph_step ? std::span<const SequenceInput>(padded) : batch;
    const int d = cfg.hidden_size;
    // The trunk's batch and the heads' sub-batch (sequences with mtp_heads, rows gathered
    // densely), with every index array packed into one upload.
    IndexPlan trunk, heads;
    std::vector<int32_t> head_rows;  // rows of x that the heads' sub-batch takes
    std::vector<int32_t> tokens;
    // A recorded commit rides along with the slot's next verify when the tiled kernels run it
    // and the same layers run (heads or not); otherwise it is applied now.
    std::vector<int> apply_now;
    std::vector<bool> fused(run.size());
    for (size_t i = 0; i < run.size(); ++i) {
      const SequenceInput& s = run[i];
      const Deferred& d = deferred_[s.slot];
      fused[i] = d.pending > 0 && s.defer_commit && Tiled() && d.pending_heads == s.mtp_heads;
      if (d.pending > 0 && !fused[i]) apply_now.push_back(s.slot);
    }
    RETURN_IF_ERROR(ApplyPendingCommits(apply_now));
    RETURN_IF_ERROR(profiler_.Mark("start", stream_));
    bool any_fused = false;
    for (size_t i = 0; i < run.size(); ++i) {
      const SequenceInput& s = run[i];
      const int first = static_cast<int>(tokens.size());
      tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
      Deferred& d = deferred_[s.slot];
      const int half = 1 - d.half;  // never the half a fused commit reads
      const int pend = fused[i] ? d.pending : 0;
      const int32_t pend_row = StoreRow(s.slot, d.pending_half, 0);
      any_fused = any_fused || pend > 0;
      trunk.AddSequence(s, StoreRow(s.slot, half, 0), pend_row, pend);
      if (s.mtp_heads) {
        for (int t = 0; t < static_cast<int>(s.tokens.size()); ++t) head_rows.push_back(first + t);
        heads.AddSequence(s, StoreRow(s.slot, half, 0), pend_row, pend);
      }
      d = s.defer_commit ? Deferred{static_cast<int>(s.tokens.size()), s.mtp_heads, half} : Deferred{};
    }
    const int rows = static_cast<int>(tokens.size());
    const int n_picked = static_cast<int>(trunk.picked.size());
    std::vector<int32_t> packed = tokens;
    packed.insert(packed.end(), head_rows.begin(), head_rows.end());
    const size_t trunk_at = packed.size();
    trunk.AppendTo(&packed);
    const size_t heads_at = packed.size();
    heads.AppendTo(&packed);
    ASSIGN_OR_RETURN(int32_t* d_ints, Typed<int32_t>("ints", packed.size()));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_ints, packed.data(), packed.size() * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream_));
    const bool any_deferred = !trunk.defer_src.empty();
    float* store = nullptr;
    if (any_deferred) {
      ASSIGN_OR_RETURN(store, DeferredStore());
    }
    Indices idx = trunk.Resolve(d_ints + trunk_at, store);
    if (any_fused) {
      ASSIGN_OR_RETURN(idx.commit_factors,
                       Typed<float>("commit_factors", size_t(idx.deferred.count) * cfg.num_heads * kCommitFactorStride));
    }
    const int32_t* d_tokens = d_ints;
    const int32_t* d_head_rows = d_ints + rows;

    // Argmax of every trunk row, then of every head row ([head][sub-batch row]), in one buffer.
    const int extra = heads.slots.empty() ? 0 : num_mtp_heads();
    const int n_head_rows = extra * static_cast<int>(heads.picked.size());
    // Fetched before the kernels so that a graph capture never allocates.
    ASSIGN_OR_RETURN(float* logits, Typed<float>("logits", size_t(n_picked) * cfg.vocab_size));
    ASSIGN_OR_RETURN(int32_t* d_argmax, Typed<int32_t>("argmax", size_t(n_picked) + n_head_rows));
    float* head_logits = nullptr;  // [extra, head rows, vocab]
    auto enqueue = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(float* x, Typed<float>("x", size_t(rows) * d));
      CUDA_RETURN_IF_ERROR(EmbeddingGather(dev_->embeddings.data, dev_->embeddings.type, d_tokens, rows, d, x, stream_));
      RETURN_IF_ERROR(profiler_.Mark("embedding", stream_));
      const int head_count = static_cast<int>(head_rows.size());
      const int trunk_layers = cfg.mtp ? cfg.mtp->trunk_layers : cfg.num_blocks;
      ASSIGN_OR_RETURN(float* z, Typed<float>("z", size_t(head_count) * d));
      PendingResidual residual;
      for (int l = 0; l < cfg.num_blocks; ++l) {
        if (head_count > 0 && l == trunk_layers) {
          RETURN_IF_ERROR(FlushResidual(rows, &residual, x));
          CUDA_RETURN_IF_ERROR(GatherRows(x, d_head_rows, head_count, d, z, stream_));
        }
        RETURN_IF_ERROR(RunBlock(dev_->blocks[l], l, rows, idx, &residual, x));
      }
      RETURN_IF_ERROR(FlushResidual(rows, &residual, x));
      if (head_count > 0 && trunk_layers == cfg.num_blocks) {
        CUDA_RETURN_IF_ERROR(GatherRows(x, d_head_rows, head_count, d, z, stream_));
      }

      RETURN_IF_ERROR(Unembed(x, idx.picked, n_picked, logits));
      RETURN_IF_ERROR(profiler_.Mark("lm_head + soft cap", stream_));
      ASSIGN_OR_RETURN(head_logits, RunMtpHeads(heads, d_ints + heads_at, store, idx.commit_factors, z));
      CUDA_RETURN_IF_ERROR(ArgmaxRows(logits, n_picked, cfg.vocab_size, d_argmax, stream_));
      if (extra > 0) {
        CUDA_RETURN_IF_ERROR(ArgmaxRows(head_logits, n_head_rows, cfg.vocab_size, d_argmax + n_picked, stream_));
      }
      return absl::OkStatus();
    };
    if (graph_step) {
      // Everything that changes the launches: sizes, flags, whether a commit is fused.
      int key = bucket * (kMaxDeferredTokens + 1) + len;
      for (bool bit : {first.all_logits, first.mtp_heads, first.defer_commit, any_fused}) key = key * 2 + (bit ? 1 : 0);
      RETURN_IF_ERROR(graphs_.Run(key, [this] { return scratch_.generation(); }, stream_, enqueue));
    } else {
      RETURN_IF_ERROR(enqueue());
    }
    RETURN_IF_ERROR(SampleOnDevice(batch, trunk.row_offset, logits, out));
    out->vocab_size = cfg.vocab_size;
    out->row_offset = trunk.row_offset;
    if (profiler_.on) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      RETURN_IF_ERROR(profiler_.Collect());
    }
    const auto copy_start = std::chrono::steady_clock::now();
    argmax_host_.resize(size_t(n_picked) + n_head_rows);
    RETURN_IF_ERROR(copier_.Copy(argmax_host_.data(), d_argmax, argmax_host_.size() * sizeof(int32_t), stream_));
    // Padding rows (graph steps) are dropped: the caller's sequences come first.
    const int real = static_cast<int>(batch.size());
    out->row_offset.resize(real + 1);
    out->argmax.assign(argmax_host_.begin(), argmax_host_.begin() + out->row_offset.back());
    out->num_mtp_heads = extra;
    ScatterHeadRows(batch, trunk, heads, argmax_host_.data() + n_picked, 1, &out->mtp_argmax);
    if (extra > 0) out->mtp_argmax.resize(size_t(out->row_offset.back()) * extra);
    bool tokens_only = true;
    for (const SequenceInput& s : batch) tokens_only = tokens_only && s.tokens_only;
    if (tokens_only) {
      out->logits.clear();
      out->mtp_logits.clear();
    } else {
      out->logits.resize(size_t(n_picked) * cfg.vocab_size);
      RETURN_IF_ERROR(copier_.Copy(out->logits.data(), logits, out->logits.size() * sizeof(float), stream_));
      head_logits_host_.resize(size_t(n_head_rows) * cfg.vocab_size);
      RETURN_IF_ERROR(
          copier_.Copy(head_logits_host_.data(), head_logits, head_logits_host_.size() * sizeof(float), stream_));
      ScatterHeadRows(batch, trunk, heads, head_logits_host_.data(), cfg.vocab_size, &out->mtp_logits);
    }
    if (profiler_.on) {
      profiler_.Add("logits to host",
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - copy_start).count());
    }
    return absl::OkStatus();
  }

  absl::Status Commit(std::span<const CommitInput> commits) override {
    for (const CommitInput& c : commits) {
      RETURN_IF_ERROR(CheckSlot(c.slot, -1));
      if (c.num_tokens < 0 || c.num_tokens > deferred_[c.slot].tokens) {
        return absl::FailedPreconditionError("commit: slot " + std::to_string(c.slot) + " has " +
                                             std::to_string(deferred_[c.slot].tokens) +
                                             " deferred tokens, cannot commit " + std::to_string(c.num_tokens));
      }
    }
    // Recorded only; a deferred forward applied or fused any earlier commit of its slot, so
    // none is pending when tokens are.
    for (const CommitInput& c : commits) {
      Deferred& d = deferred_[c.slot];
      if (c.num_tokens > 0) {
        d.pending = c.num_tokens;
        d.pending_heads = d.heads;
        d.pending_half = d.half;
      }
      d.tokens = 0;
    }
    return absl::OkStatus();
  }

  // Applies the recorded commits of `slots` to their states with the commit kernel.
  absl::Status ApplyPendingCommits(const std::vector<int>& slots) {
    // Sequences whose heads ran first: the head layers commit only those.
    std::vector<int> order;
    for (int with_heads : {1, 0}) {
      for (int slot : slots) {
        if (deferred_[slot].pending > 0 && deferred_[slot].pending_heads == (with_heads == 1)) order.push_back(slot);
      }
    }
    if (order.empty()) return absl::OkStatus();
    int num_with_heads = 0;
    std::vector<int32_t> packed;  // row begin, row end (in the store), slot
    for (int slot : order) {
      num_with_heads += deferred_[slot].pending_heads ? 1 : 0;
      packed.push_back(StoreRow(slot, deferred_[slot].pending_half, 0));
    }
    for (int slot : order) packed.push_back(StoreRow(slot, deferred_[slot].pending_half, deferred_[slot].pending));
    for (int slot : order) packed.push_back(slot);
    for (int slot : order) deferred_[slot].pending = 0;
    RETURN_IF_ERROR(profiler_.Mark("start", stream_));
    ASSIGN_OR_RETURN(int32_t* d_ints, Typed<int32_t>("commit_ints", packed.size()));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_ints, packed.data(), packed.size() * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream_));
    ASSIGN_OR_RETURN(float* store, DeferredStore());
    const ModelConfig& cfg = weights_->config;
    const int n = static_cast<int>(order.size());
    for (int l = 0; l < layout_.num_layers; ++l) {
      const int seqs = l < cfg.num_blocks ? n : num_with_heads;
      if (seqs == 0) continue;
      const DeviceSubset subset{d_ints, d_ints + n, d_ints + 2 * n, seqs, 0};
      const MlstmParams p = SubsetParams(l, store + StoreLayerOffset(l), StoreColumns(), nullptr, subset);
      CUDA_RETURN_IF_ERROR(Tiled() ? MlstmCommit(p, stream_) : MlstmRecurrent(p, stream_));
    }
    RETURN_IF_ERROR(profiler_.Mark("commit", stream_));
    if (profiler_.on) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      RETURN_IF_ERROR(profiler_.Collect());
    }
    return absl::OkStatus();
  }

  StageProfiler& profiler() { return profiler_; }

 private:
  // Some of the sequences of a batch, for a kernel launch over them alone.
  struct DeviceSubset {
    const int32_t* begin;  // [count]: rows [begin[i], end[i]) ...
    const int32_t* end;
    const int32_t* slots;  // ... in the state slot slots[i]
    int count;
    int max_tokens;
    const int32_t* pend_begin = nullptr;  // a fused commit's rows in the store (deferred subset)
    const int32_t* pend_end = nullptr;
    bool any_pending = false;
  };
  // Device index arrays of one batch (trunk or MTP heads' sub-batch).
  struct Indices {
    const int32_t* row_begin;  // [num_seqs + 1]
    const int32_t* slots;      // [num_seqs]
    const int32_t* picked;     // rows to unembed
    const int32_t* defer;      // [num_seqs] defer_commit flags
    const int32_t* defer_src;  // rows of deferred sequences ...
    const int32_t* defer_dst;  // ... and where the store keeps their mLSTM inputs (StoreRow)
    int num_defer_rows;
    float* store;
    float* commit_factors;  // [deferred count, heads, kCommitFactorStride] when deferred.any_pending
    int num_seqs;
    // The sequences with defer_commit, and the others split by length: one token (the step
    // kernel) or more (chunkwise), so that decode rows beside a prompt chunk keep the step
    // kernel's cost instead of taking the chunkwise kernel's.
    DeviceSubset deferred, single, multi;
  };

  struct Subset {
    std::vector<int32_t> begin, end, slots;
    std::vector<int32_t> pend_begin, pend_end;  // rows of a fused commit in the store (may be empty)
    int max_tokens = 0;
    bool any_pending = false;
    void Add(int first, int n, int slot, int32_t pend_row, int pend) {
      begin.push_back(first);
      end.push_back(first + n);
      slots.push_back(slot);
      pend_begin.push_back(pend_row);
      pend_end.push_back(pend_row + pend);
      max_tokens = std::max(max_tokens, n);
      any_pending = any_pending || pend > 0;
    }
  };

  // Host side of Indices, built sequence by sequence.
  struct IndexPlan {
    std::vector<int32_t> row_begin = {0}, slots, picked, defer, defer_src, defer_dst;
    std::vector<int> row_offset = {0};  // ForwardOutput::row_offset of these sequences
    Subset deferred, single, multi;

    int rows() const { return row_begin.back(); }
    // store_row: where a deferred sequence's inputs go; pend_row, pend: the rows of the slot's
    // commit that this forward applies (fused), if any.
    void AddSequence(const SequenceInput& s, int32_t store_row, int32_t pend_row, int pend) {
      const int first = rows(), n = static_cast<int>(s.tokens.size());
      for (int r = s.all_logits ? first : first + n - 1; r < first + n; ++r) picked.push_back(r);
      row_offset.push_back(static_cast<int>(picked.size()));
      row_begin.push_back(first + n);
      slots.push_back(s.slot);
      defer.push_back(s.defer_commit ? 1 : 0);
      Subset& subset = s.defer_commit ? deferred : n == 1 ? single : multi;
      subset.Add(first, n, s.slot, pend_row, s.defer_commit ? pend : 0);
      for (int t = 0; s.defer_commit && t < n; ++t) {
        defer_src.push_back(first + t);
        defer_dst.push_back(store_row + t);
      }
    }
    void AppendTo(std::vector<int32_t>* packed) const {
      for (const auto* v : {&row_begin, &slots, &picked, &defer, &defer_src, &defer_dst, &deferred.begin,
                            &deferred.end, &deferred.slots, &deferred.pend_begin, &deferred.pend_end, &single.begin,
                            &single.end, &single.slots, &single.pend_begin, &single.pend_end, &multi.begin, &multi.end,
                            &multi.slots, &multi.pend_begin, &multi.pend_end}) {
        packed->insert(packed->end(), v->begin(), v->end());
      }
    }
    // `at`: the device copy of what AppendTo wrote.
    Indices Resolve(const int32_t* at, float* store) const {
      Indices idx;
      idx.row_begin = at;
      idx.slots = idx.row_begin + row_begin.size();
      idx.picked = idx.slots + slots.size();
      idx.defer = idx.picked + picked.size();
      idx.defer_src = idx.defer + defer.size();
      idx.defer_dst = idx.defer_src + defer_src.size();
      idx.num_defer_rows = static_cast<int>(defer_src.size());
      idx.store = store;
      idx.commit_factors = nullptr;
      idx.num_seqs = static_cast<int>(slots.size());
      const int32_t* next = idx.defer_dst + defer_dst.size();
      for (auto [host, dev] :
           {std::pair{&deferred, &idx.deferred}, std::pair{&single, &idx.single}, std::pair{&multi, &idx.multi}}) {
        const int n = static_cast<int>(host->slots.size());
        *dev = DeviceSubset{next, next + n, next + 2 * n, n, host->max_tokens, next + 3 * n, next + 4 * n,
                            host->any_pending};
        next += 5 * n;
      }
      return idx;
    }
  };

  // What a slot's deferred forwards left: the inputs of the last one (for Commit()), and a
  // commit recorded but not yet applied to the state.
  struct Deferred {
    int tokens = 0;
    bool heads = false;  // the head layers ran too
    int half = 0;        // the store half holding its inputs
    int pending = 0;     // committed tokens not yet in the state (from half pending_half)
    bool pending_heads = false;
    int pending_half = 0;
  };

  // Where q, k, v, ĩ, f̃ sit in a row of a buffer that feeds the mLSTM kernels.
  struct MlstmColumns {
    int q, k, v, igate, fgate;
    int64_t stride;
  };
  MlstmColumns ProjMlstmColumns() const { return {cols_.q, cols_.k, cols_.v, cols_.igate, cols_.fgate, cols_.width}; }

  // The store of deferred mLSTM inputs: [slot][half][layer][kMaxDeferredTokens][k | v | ĩ | f̃];
  // two halves, so that a verify writes its inputs while the previous one's are applied.
  int StoreWidth() const {
    const ModelConfig& cfg = weights_->config;
    return cfg.qk_dim() + cfg.v_dim() + 2 * cfg.num_heads;
  }
  MlstmColumns StoreColumns() const {
    const ModelConfig& cfg = weights_->config;
    const int v = cfg.qk_dim(), ig = v + cfg.v_dim();
    return {0, 0, v, ig, ig + cfg.num_heads, StoreWidth()};  // q unused: a commit has no outputs
  }
  // Row of token t of `slot` in layer 0's view of the store; layer l's view starts
  // StoreLayerOffset(l) floats later.
  int32_t StoreRow(int slot, int half, int t) const {
    return ((slot * 2 + half) * layout_.num_layers) * kMaxDeferredTokens + t;
  }
  int64_t StoreLayerOffset(int layer) const { return int64_t(layer) * kMaxDeferredTokens * StoreWidth(); }
  absl::StatusOr<float*> DeferredStore() {
    return Typed<float>("deferred",
                        size_t(states_.num_slots()) * 2 * layout_.num_layers * kMaxDeferredTokens * StoreWidth());
  }

  MlstmParams LayerParams(int layer, const float* base, const MlstmColumns& c, float* h, const int32_t* row_begin,
                          const int32_t* slots, int num_seqs) const {
    const ModelConfig& cfg = weights_->config;
    MlstmParams p;
    p.q = base + c.q;
    p.k = base + c.k;
    p.v = base + c.v;
    p.igate = base + c.igate;
    p.fgate = base + c.fgate;
    p.proj_stride = c.stride;
    p.h = h;
    p.state = states_.Ref(layer);
    p.seq_row_begin = row_begin;
    p.seq_slot = slots;
    p.num_seqs = num_seqs;
    p.heads = cfg.num_heads;
    p.dqk = cfg.qk_head_dim();
    p.dv = cfg.v_head_dim();
    p.gate_cap = cfg.gate_soft_cap ? static_cast<float>(*cfg.gate_soft_cap) : 0.0f;
    p.eps = static_cast<float>(cfg.eps);
    return p;
  }

  // logits [n, vocab] = soft_cap(lm_head(out_norm(x[picked]))).
  absl::Status Unembed(const float* x, const int32_t* picked, int n, float* logits) {
    const ModelConfig& cfg = weights_->config;
    const int d = cfg.hidden_size;
    ASSIGN_OR_RETURN(float* sel, Typed<float>("sel", size_t(n) * d));
    ASSIGN_OR_RETURN(float* normed, Typed<float>("normed", size_t(n) * d));
    ASSIGN_OR_RETURN(const Bf16Activation bf16, Bf16Input(n));
    CUDA_RETURN_IF_ERROR(GatherRows(x, picked, n, d, sel, stream_));
    CUDA_RETURN_IF_ERROR(RmsNorm(sel, dev_->out_norm_w, nullptr, n, d, static_cast<float>(cfg.norm_eps),
                                 Fp32InputFor(n, dev_->lm_head, normed), bf16, stream_));
    RETURN_IF_ERROR(Linear(normed, bf16, n, dev_->lm_head, nullptr, false, logits));
    if (cfg.output_logit_soft_cap) {
      CUDA_RETURN_IF_ERROR(
          SoftCap(logits, int64_t(n) * cfg.vocab_size, static_cast<float>(*cfg.output_logit_soft_cap), stream_));
    }
    return absl::OkStatus();
  }

  // Runs heads 1..n-1 on z (the sub-batch's rows of the residual stream the heads read);
  // returns their logits [head][picked row][vocab] on the device, or null without head sequences.
  absl::StatusOr<float*> RunMtpHeads(const IndexPlan& plan, const int32_t* at, float* store, float* commit_factors,
                                     const float* z) {
    if (plan.slots.empty()) return nullptr;
    const ModelConfig& cfg = weights_->config;
    const int d = cfg.hidden_size, rows = plan.rows(), n = static_cast<int>(plan.picked.size());
    Indices idx = plan.Resolve(at, store);
    idx.commit_factors = commit_factors;
    ASSIGN_OR_RETURN(float* hx, Typed<float>("head_x", size_t(rows) * d));
    ASSIGN_OR_RETURN(float* logits, Typed<float>("head_logits", size_t(num_mtp_heads()) * n * cfg.vocab_size));
    for (int head = 1; head <= num_mtp_heads(); ++head) {
      if (cfg.mtp->head_type == MtpHeadType::kMlstmBlock) {
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(hx, z, size_t(rows) * d * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
        PendingResidual residual;
        RETURN_IF_ERROR(RunBlock(dev_->head_blocks[head - 1], cfg.num_blocks + head - 1, rows, idx, &residual, hx));
        RETURN_IF_ERROR(FlushResidual(rows, &residual, hx));
      } else {
        ASSIGN_OR_RETURN(const Bf16Activation bf16, Bf16Input(rows));
        if (bf16.data != nullptr) CUDA_RETURN_IF_ERROR(ToBf16Activation(z, int64_t(rows) * d, bf16, stream_));
        RETURN_IF_ERROR(Linear(z, bf16, rows, dev_->head_linear[head - 1], nullptr, false, hx));
      }
      RETURN_IF_ERROR(Unembed(hx, idx.picked, n, logits + size_t(head - 1) * n * cfg.vocab_size));
    }
    RETURN_IF_ERROR(profiler_.Mark("mtp heads", stream_));
    return logits;
  }

  // Reorders per-head rows of `width` values from [head][sub-batch picked row] (host copies of
  // RunMtpHeads' outputs) to ForwardOutput's [picked row][head] over all of the batch's picked
  // rows; rows of sequences without heads are zeros. Empty without heads.
  template <typename T>
  void ScatterHeadRows(std::span<const SequenceInput> batch, const IndexPlan& trunk, const IndexPlan& heads,
                       const T* src, size_t width, std::vector<T>* dst) const {
    dst->clear();
    if (heads.slots.empty()) return;
    const int extra = num_mtp_heads();
    const size_t n = heads.picked.size();
    dst->assign(trunk.picked.size() * extra * width, T{});
    for (size_t i = 0, hs = 0; i < batch.size(); ++i) {
      if (!batch[i].mtp_heads) continue;
      for (int q = 0; q < trunk.row_offset[i + 1] - trunk.row_offset[i]; ++q) {
        for (int head = 1; head <= extra; ++head) {
          std::copy_n(src + ((head - 1) * n + heads.row_offset[hs] + q) * width, width,
                      dst->data() + (size_t(trunk.row_offset[i] + q) * extra + head - 1) * width);
        }
      }
      ++hs;
    }
  }

  // ForwardOutput::sampled: the token of each sequence's `sample` from its last row of
  // `logits` ([picked rows, vocab]; the step's kernels or graph left them in place).
  absl::Status SampleOnDevice(std::span<const SequenceInput> batch, const std::vector<int>& row_offset,
                              const float* logits, ForwardOutput* out) {
    out->sampled.assign(batch.size(), -1);
    const int vocab = weights_->config.vocab_size;
    sample_plan_.Reset(vocab);
    std::vector<size_t> sampled_seqs;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].sample == nullptr) continue;
      sample_plan_.Add(*batch[i].sample, row_offset[i + 1] - 1);
      sampled_seqs.push_back(i);
    }
    if (sampled_seqs.empty()) return absl::OkStatus();
    const std::vector<SampleRowSpec>& rows = sample_plan_.rows();
    const std::vector<PenaltyEntry>& penalties = sample_plan_.penalties();
    const size_t n = rows.size();
    // Capacities in powers of two: a scratch buffer that grows moves, which makes the step
    // graphs stale (Scratch::generation), and the penalty lists grow by a token a step.
    const size_t n_cap = std::bit_ceil(n);
    const size_t entries_cap = std::bit_ceil(std::max<size_t>(penalties.size(), 1024));
    ASSIGN_OR_RETURN(SampleRowSpec* d_rows, Typed<SampleRowSpec>("sample_rows", n_cap));
    ASSIGN_OR_RETURN(PenaltyEntry* d_penalties, Typed<PenaltyEntry>("sample_penalties", entries_cap));
    ASSIGN_OR_RETURN(float* penalised, Typed<float>("sample_penalised", n_cap * vocab));
    ASSIGN_OR_RETURN(double* weights, Typed<double>("sample_weights", n_cap * vocab));
    ASSIGN_OR_RETURN(int32_t* d_tokens, Typed<int32_t>("sample_tokens", n_cap));
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(d_rows, rows.data(), n * sizeof(SampleRowSpec), cudaMemcpyHostToDevice, stream_));
    if (!penalties.empty()) {
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_penalties, penalties.data(), penalties.size() * sizeof(PenaltyEntry),
                                           cudaMemcpyHostToDevice, stream_));
    }
    const SampleRowsParams p{logits, vocab, d_rows, static_cast<int>(n), d_penalties, penalised, weights, d_tokens};
    CUDA_RETURN_IF_ERROR(SampleRows(p, stream_));
    RETURN_IF_ERROR(profiler_.Mark("sample", stream_));
    sampled_host_.resize(n);
    RETURN_IF_ERROR(copier_.Copy(sampled_host_.data(), d_tokens, n * sizeof(int32_t), stream_));
    for (size_t j = 0; j < n; ++j) out->sampled[sampled_seqs[j]] = sampled_host_[j];
    return absl::OkStatus();
  }

  bool Tiled() const {
    const ModelConfig& cfg = weights_->config;
    return MlstmStepSupports(cfg.qk_head_dim(), cfg.v_head_dim(), states_.type());
  }

  // The mLSTM recurrence of one layer over the batch: deferred sequences through the verify
  // kernel, the others through the step kernel (one token each) or the chunkwise kernel (the
  // recurrent one for heads too large for its shared memory); heads too large for the tiled
  // kernels take the recurrent kernel for all.
  absl::Status RunMlstm(int layer, int rows, const float* proj, float* h, const Indices& idx) {
    if (!Tiled()) {
      MlstmParams p = LayerParams(layer, proj, ProjMlstmColumns(), h, idx.row_begin, idx.slots, idx.num_seqs);
      p.seq_defer = idx.defer;
      CUDA_RETURN_IF_ERROR(MlstmRecurrent(p, stream_));
      return profiler_.Mark("mlstm recurrent", stream_);
    }
    if (idx.deferred.count > 0) {
      MlstmParams p = SubsetParams(layer, proj, ProjMlstmColumns(), h, idx.deferred);
      if (idx.deferred.any_pending) {
        // The fused commit: n, m and the factors first, then the verify applies them to C.
        const float* base = idx.store + StoreLayerOffset(layer);
        const MlstmColumns sc = StoreColumns();
        MlstmParams f = LayerParams(layer, base, sc, nullptr, idx.deferred.pend_begin, idx.deferred.slots,
                                    idx.deferred.count);
        f.seq_row_end = idx.deferred.pend_end;
        f.pend_coef = idx.commit_factors;
        CUDA_RETURN_IF_ERROR(MlstmCommitFactors(f, stream_));
        p.pend_k = base + sc.k;
        p.pend_v = base + sc.v;
        p.pend_stride = sc.stride;
        p.pend_begin = idx.deferred.pend_begin;
        p.pend_end = idx.deferred.pend_end;
        p.pend_coef = idx.commit_factors;
      }
      CUDA_RETURN_IF_ERROR(MlstmVerify(p, idx.deferred.max_tokens, stream_));
      RETURN_IF_ERROR(profiler_.Mark("mlstm verify", stream_));
    }
    if (idx.single.count > 0) {
      MlstmParams p = SubsetParams(layer, proj, ProjMlstmColumns(), h, idx.single);
      CUDA_RETURN_IF_ERROR(MlstmStep(p, stream_));
      RETURN_IF_ERROR(profiler_.Mark("mlstm step", stream_));
    }
    if (idx.multi.count > 0) {
      MlstmParams p = SubsetParams(layer, proj, ProjMlstmColumns(), h, idx.multi);
      if (MlstmChunkwiseSupports(p.dqk)) {
        ASSIGN_OR_RETURN(p.chunk_scores, Typed<float>("chunk_scores", size_t(rows) * p.heads * kChunkTokens));
        ASSIGN_OR_RETURN(p.chunk_nm, Typed<float>("chunk_nm", size_t(p.num_seqs) * p.heads * (p.dqk + 1)));
        CUDA_RETURN_IF_ERROR(MlstmChunkwise(p, idx.multi.max_tokens, stream_));
        RETURN_IF_ERROR(profiler_.Mark("mlstm chunkwise", stream_));
      } else {
        CUDA_RETURN_IF_ERROR(MlstmRecurrent(p, stream_));
        RETURN_IF_ERROR(profiler_.Mark("mlstm recurrent", stream_));
      }
    }
    return absl::OkStatus();
  }

  MlstmParams SubsetParams(int layer, const float* base, const MlstmColumns& c, float* h, const DeviceSubset& s) const {
    MlstmParams p = LayerParams(layer, base, c, h, s.begin, s.slots, s.count);
    p.seq_row_end = s.end;
    return p;
  }

  // A block's last product (down), left uncombined for the next block's first RMSNorm to fold
  // into x (ResidualRmsNorm); t.t null when there is none.
  struct PendingResidual {
    GemmPlanes t;
    const float* bias = nullptr;
    int n = 0;
  };

  // Adds a pending residual into x before anything but a block reads x.
  absl::Status FlushResidual(int rows, PendingResidual* residual, float* x) {
    if (residual->t.t != nullptr) {
      CUDA_RETURN_IF_ERROR(CombineSplit(residual->t, residual->bias, rows, residual->n, true, x, stream_));
    }
    *residual = PendingResidual{};
    return absl::OkStatus();
  }

  // x (rows of the residual stream) through one block; `residual`: in, the previous block's
  // pending product, folded in first; out, this block's.
  absl::Status RunBlock(const DeviceBlock& w, int layer, int rows, const Indices& idx, PendingResidual* residual,
                        float* x) {
    const ModelConfig& cfg = weights_->config;
    const int d = cfg.hidden_size, heads = cfg.num_heads, v = cfg.v_dim(), ffn = cfg.ffn_dim();
    const float norm_eps = static_cast<float>(cfg.norm_eps);
    ASSIGN_OR_RETURN(float* xn, Typed<float>("xn", size_t(rows) * d));
    ASSIGN_OR_RETURN(const Bf16Activation bf16, Bf16Input(rows));
    ASSIGN_OR_RETURN(float* proj, Typed<float>("proj", size_t(rows) * cols_.width));
    ASSIGN_OR_RETURN(float* h, Typed<float>("h", size_t(rows) * v));
    ASSIGN_OR_RETURN(float* hg, Typed<float>("hg", size_t(rows) * v));
    ASSIGN_OR_RETURN(float* gu, Typed<float>("gu", size_t(rows) * 2 * ffn));
    ASSIGN_OR_RETURN(float* act, Typed<float>("act", size_t(rows) * ffn));

    // mLSTM sub-layer: x += out_proj(sigmoid(o) * MultiHeadNorm(mLSTM(q, k, v, ĩ, f̃))).
    if (residual->t.t != nullptr) {
      CUDA_RETURN_IF_ERROR(ResidualRmsNorm(x, residual->t, residual->bias, w.norm_mlstm_w, w.norm_mlstm_b, rows, d,
                                           norm_eps, Fp32InputFor(rows, w.proj, xn), bf16, stream_));
    } else {
      CUDA_RETURN_IF_ERROR(RmsNorm(x, w.norm_mlstm_w, w.norm_mlstm_b, rows, d, norm_eps, Fp32InputFor(rows, w.proj, xn),
                                   bf16, stream_));
    }
    RETURN_IF_ERROR(profiler_.Mark("rmsnorm", stream_));
    // proj: [rows, q | k | v | o | ĩ | f̃] from xn [rows, d]
    RETURN_IF_ERROR(Linear(xn, bf16, rows, w.proj, w.proj_b, false, proj));
    RETURN_IF_ERROR(profiler_.Mark("gemm q|k|v|o|gates", stream_));
    if (idx.num_defer_rows > 0) {
      CUDA_RETURN_IF_ERROR(GatherRowSegments(proj, cols_.width, cols_.k, cfg.qk_dim() + v, cols_.igate, 2 * heads,
                                             idx.defer_src, idx.defer_dst, idx.num_defer_rows,
                                             idx.store + StoreLayerOffset(layer), stream_));
    }
    RETURN_IF_ERROR(RunMlstm(layer, rows, proj, h, idx));
    // hg: [rows, heads * dv], normed per head and gated by sigmoid(o)
    CUDA_RETURN_IF_ERROR(HeadNormGate(h, proj + cols_.o, cols_.width, w.mh_norm_w, w.mh_norm_b, rows, heads,
                                      cfg.v_head_dim(), norm_eps, Fp32InputFor(rows, w.out_proj, hg), bf16, stream_));
    RETURN_IF_ERROR(profiler_.Mark("head norm * sigmoid(o)", stream_));
    // A GEMM's combine rides along with the next pass over x or gu.
    ASSIGN_OR_RETURN(const GemmPlanes out_pair, LinearUncombined(hg, bf16, rows, w.out_proj, w.out_proj_b, true, x));
    RETURN_IF_ERROR(profiler_.Mark("gemm out_proj", stream_));

    // Feed-forward sub-layer: x += down(silu(up_gate(xn)) * up(xn)).
    if (out_pair.t != nullptr) {
      CUDA_RETURN_IF_ERROR(ResidualRmsNorm(x, out_pair, w.out_proj_b, w.norm_ffn_w, w.norm_ffn_b, rows, d, norm_eps,
                                           Fp32InputFor(rows, w.up, xn), bf16, stream_));
    } else {
      CUDA_RETURN_IF_ERROR(
          RmsNorm(x, w.norm_ffn_w, w.norm_ffn_b, rows, d, norm_eps, Fp32InputFor(rows, w.up, xn), bf16, stream_));
    }
    RETURN_IF_ERROR(profiler_.Mark("rmsnorm", stream_));
    // gu: [rows, up_gate | up]
    ASSIGN_OR_RETURN(const GemmPlanes gu_pair, LinearUncombined(xn, bf16, rows, w.up, w.up_b, false, gu));
    RETURN_IF_ERROR(profiler_.Mark("gemm up_gate|up", stream_));
    // Without planes gu holds the product, bias included.
    const bool planes = gu_pair.t != nullptr;
    CUDA_RETURN_IF_ERROR(SwiGlu(planes ? gu_pair : GemmPlanes{gu, 1}, planes ? w.up_b : nullptr, rows, ffn,
                                Fp32InputFor(rows, w.down, act), bf16, stream_));
    RETURN_IF_ERROR(profiler_.Mark("swiglu", stream_));
    ASSIGN_OR_RETURN(const GemmPlanes down_pair, LinearUncombined(act, bf16, rows, w.down, w.down_b, true, x));
    *residual = PendingResidual{down_pair, w.down_b, d};
    RETURN_IF_ERROR(profiler_.Mark("gemm down", stream_));
    return absl::OkStatus();
  }

  // y[rows, n] (+)= x[rows, k] w[n, k]ᵀ (+ bias). `x_bf16` is x's bf16 form (no data when no
  // matrix is bf16).
  absl::Status Linear(const float* x, const Bf16Activation& x_bf16, int rows, const DeviceMatrix& w, const float* bias,
                      bool accumulate, float* y) {
    ASSIGN_OR_RETURN(const GemmPlanes t, LinearUncombined(x, x_bf16, rows, w, bias, accumulate, y));
    if (t.t != nullptr) CUDA_RETURN_IF_ERROR(CombineSplit(t, bias, rows, w.rows, accumulate, y, stream_));
    return absl::OkStatus();
  }

  // Linear, except that a product through the bf16 GEMM comes back uncombined: returns its
  // planes [1, 2 or 4, rows, n] (valid until the next Linear) for the caller to add up with
  // bias and y, and leaves y alone; no planes (t null) when y already holds the product.
  absl::StatusOr<GemmPlanes> LinearUncombined(const float* x, const Bf16Activation& x_bf16, int rows,
                                                const DeviceMatrix& w, const float* bias, bool accumulate, float* y) {
    const int n = w.rows, k = w.cols;
    if (rows == 0) return GemmPlanes{};
    if (w.type == WeightType::kF32) {
      if (rows <= kGemvMaxRows) {
        CUDA_RETURN_IF_ERROR(GemvSmallRows(x, static_cast<const float*>(w.data), bias, rows, n, k, accumulate, y, stream_));
        return GemmPlanes{};
      }
      const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
      CUBLAS_RETURN_IF_ERROR(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha,
                                         static_cast<const float*>(w.data), k, x, k, &beta, y, n));
      if (bias) CUDA_RETURN_IF_ERROR(AddBias(y, bias, rows, n, stream_));
      return GemmPlanes{};
    }
    if (UsesGemv(rows, w)) {
      const bool bf16_x = precision_ == Precision::kBf16;
      CUDA_RETURN_IF_ERROR(GemvBf16SmallRows(bf16_x ? x_bf16.data : static_cast<const void*>(x), bf16_x, w.data, bias,
                                             rows, n, k, accumulate, y, stream_));
      return GemmPlanes{};
    }
    // t: [k-slices][2 or 1, rows, n] = (hi; lo) · wᵀ or bf16(x) · wᵀ in one GEMM over 2 * rows or
    // rows columns (cuBLAS's view), in one or two slices of k.
    const int forms = x_bf16.pair ? 2 : 1, cols = forms * rows;
    ASSIGN_OR_RETURN(float* t, Typed<float>("gemm_planes", size_t(cols) * LtGemm::MaxKSlices(cols) * n));
    ASSIGN_OR_RETURN(const int slices, lt_->Run(w.data, n, k, x_bf16.data, cols, t, stream_));
    return GemmPlanes{t, forms * slices};
  }

  // Whether Linear takes the GEMV for `rows` rows of bf16 weights w.
  static bool UsesGemv(int rows, const DeviceMatrix& w) {
    const bool small = int64_t(w.rows) * w.cols <= kSmallMatrixElems;
    return (rows <= kBf16GemvMaxRows || (small && rows <= kGemvMaxRows)) && w.cols % 8 == 0;
  }
  // Whether Linear over `rows` rows of w reads only the bf16 form of its input (the GEMM, and in
  // the bf16 precision the GEMV too), not the fp32 values: then the kernel that makes the input
  // need not store them.
  bool Bf16InputOnly(int rows, const DeviceMatrix& w) const {
    return w.type == WeightType::kBF16 && (precision_ == Precision::kBf16 || !UsesGemv(rows, w));
  }
  // The fp32 buffer for an input of Linear over w, or null when it only reads the bf16 form.
  float* Fp32InputFor(int rows, const DeviceMatrix& w, float* buffer) const {
    return Bf16InputOnly(rows, w) ? nullptr : buffer;
  }

  // The bf16 form (the precision's) of activations of `rows` rows of any width; no data when
  // no matrix is bf16.
  absl::StatusOr<Bf16Activation> Bf16Input(int rows) {
    const bool pair = precision_ == Precision::kExact;
    if (!dev_->any_bf16) return Bf16Activation{nullptr, pair};
    const ModelConfig& cfg = weights_->config;
    const int widest = std::max({cfg.hidden_size, cfg.v_dim(), cfg.ffn_dim()});
    ASSIGN_OR_RETURN(void* data, scratch_.Get("bf16_input", size_t(pair ? 2 : 1) * rows * widest * 2));
    return Bf16Activation{data, pair};
  }

  template <typename T>
  absl::StatusOr<T*> Typed(const std::string& name, size_t count) {
    ASSIGN_OR_RETURN(void* p, scratch_.Get(name, std::max<size_t>(count, 1) * sizeof(T)));
    return static_cast<T*>(p);
  }

  absl::Status CheckSlot(int slot, int64_t buffer_floats) const {
    if (slot < 0 || slot >= num_slots()) {
      return absl::OutOfRangeError("state slot " + std::to_string(slot) + " out of range (" +
                                   std::to_string(num_slots()) + " slots)");
    }
    if (buffer_floats >= 0 && buffer_floats != layout_.slot_floats()) {
      return absl::InvalidArgumentError("buffer has " + std::to_string(buffer_floats) + " floats, a slot has " +
                                        std::to_string(layout_.slot_floats()));
    }
    return absl::OkStatus();
  }

  std::shared_ptr<const ModelWeights> weights_;
  int device_;
  Precision precision_;
  StateLayout layout_;
  ProjColumns cols_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::unique_ptr<DeviceWeights> dev_;
  std::unique_ptr<LtGemm> lt_;
  StatePool states_;
  std::unique_ptr<SnapshotPool> snapshots_;
  Scratch scratch_;
  HostCopier copier_;
  StageProfiler profiler_;
  DecodeGraphs graphs_;
  std::vector<Deferred> deferred_;  // by slot, the scratch slot last
  std::vector<float> head_logits_host_;
  std::vector<int32_t> argmax_host_;
  SamplePlan sample_plan_;
  std::vector<int32_t> sampled_host_;
};

}  // namespace

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const ModelWeights> weights,
                                                           const CudaBackendOptions& options) {
  const int count = CudaDeviceCount();
  if (count == 0) return absl::UnavailableError("no CUDA device is available on this machine (use --device cpu)");
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError("CUDA device " + std::to_string(options.device) + " does not exist (" +
                                      std::to_string(count) + " present)");
  }
  if (options.state_dtype != DType::kF32 && options.state_dtype != DType::kBF16) {
    return absl::InvalidArgumentError("CUDA state dtype must be F32 or BF16");
  }
  const ModelConfig& cfg = weights->config;
  if (!MlstmRecurrentSupports(cfg.qk_head_dim())) {
    return absl::InvalidArgumentError("CUDA backend: qk head dim " + std::to_string(cfg.qk_head_dim()) +
                                      " is larger than the mLSTM kernels support");
  }
  const StateType state_type = options.state_dtype == DType::kBF16 ? StateType::kBF16 : StateType::kF32;
  auto backend = std::make_unique<CudaBackend>(std::move(weights), options.device, state_type, options.precision);
  RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<Backend>(std::move(backend));
}

absl::Status SetStageProfiling(Backend* backend, bool on) {
  auto* cuda = dynamic_cast<CudaBackend*>(backend);
  if (cuda == nullptr) return absl::InvalidArgumentError("stage profiling needs a CUDA backend");
  cuda->profiler().on = on;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, double>>> TakeStageProfile(Backend* backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(backend);
  if (cuda == nullptr) return absl::InvalidArgumentError("stage profiling needs a CUDA backend");
  return cuda->profiler().Take();
}

}  // namespace xlserve::kernels
