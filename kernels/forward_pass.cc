#include "kernels/forward_pass.h"

#include <algorithm>

#include "base/status_macros.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {
namespace {

// Rows up to which large bf16 matrices go through the fp32 GEMV: beyond, its FMAs (8 per
// weight and row) fall behind the weight stream (measured on an H200 with the 7B shape: 62% of
// the HBM floor at batch 1, 35% at batch 8, where the cuBLAS split-pair GEMM gives 54%).
// Matrices of at most kSmallMatrixElems take it up to kGemvMaxRows rows: there a step is bound
// by latency, and one kernel beats a GEMM plus its combine (small models, verify passes).
constexpr int kBf16GemvMaxRows = 2;
constexpr int64_t kSmallMatrixElems = int64_t{1} << 22;

}  // namespace

ForwardPass::ForwardPass(const ModelConfig& cfg, const DeviceWeights* dev, LtGemm* lt, cublasHandle_t cublas,
                         cudaStream_t stream, const StatePool* states, Precision precision,
                         const DeferredStoreLayout& store, StageProfiler* profiler)
    : cfg_(cfg),
      dev_(dev),
      lt_(lt),
      cublas_(cublas),
      stream_(stream),
      states_(states),
      precision_(precision),
      cols_(ProjColumns::ForModel(cfg)),
      store_(store),
      profiler_(profiler) {}

bool ForwardPass::Tiled() const { return MlstmStepSupports(cfg_.qk_head_dim(), cfg_.v_head_dim(), states_->type()); }

ForwardPass::MlstmColumns ForwardPass::ProjMlstmColumns() const {
  return {cols_.q, cols_.k, cols_.v, cols_.igate, cols_.fgate, cols_.width};
}

ForwardPass::MlstmColumns ForwardPass::StoreColumns() const {
  // q unused: a commit has no outputs.
  return {0, store_.k_column(), store_.v_column(), store_.igate_column(), store_.fgate_column(), store_.width()};
}

absl::StatusOr<float*> ForwardPass::DeferredStore() {
  return scratch_.deferred_store.Get(store_.Floats(states_->num_slots()));
}

absl::StatusOr<PassBuffers> ForwardPass::Prepare(const ForwardPlan& plan) {
  PassBuffers b;
  ASSIGN_OR_RETURN(int32_t* ints, scratch_.ints.Get(plan.packed.size()));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ints, plan.packed.data(), plan.packed.size() * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, stream_));
  b.ints = ints;
  if (plan.any_deferred()) {
    ASSIGN_OR_RETURN(b.store, DeferredStore());
  }
  b.idx = plan.trunk.Resolve(ints + plan.trunk_at, b.store);
  // One record per deferred sequence, reused layer by layer; a set for the trunk and one per MTP
  // head, which may run beside it.
  const size_t verified = std::max(plan.trunk.deferred.slots.size(), plan.heads.deferred.slots.size());
  if (verified > 0) {
    b.verify_coef_per_head = verified * cfg_.num_heads * kVerifyCoefStride;
    ASSIGN_OR_RETURN(b.idx.verify_coef, scratch_.verify_coef.Get((num_mtp_heads() + 1) * b.verify_coef_per_head));
  }
  b.head_picked = plan.heads.slots.empty() ? 0 : num_mtp_heads() * static_cast<int>(plan.heads.picked.size());
  // The heads' logits follow the trunk's in one buffer, which one unembedding or several fill.
  ASSIGN_OR_RETURN(b.logits, scratch_.logits.Get(size_t(plan.picked() + b.head_picked) * cfg_.vocab_size));
  if (b.head_picked > 0) b.head_logits = b.logits + size_t(plan.picked()) * cfg_.vocab_size;
  ASSIGN_OR_RETURN(b.argmax, scratch_.argmax.Get(size_t(plan.picked() + b.head_picked)));
  return b;
}

absl::Status ForwardPass::Enqueue(const ForwardPlan& plan, const PassBuffers& b) {
  const int d = cfg_.hidden_size, rows = plan.rows, head_count = plan.head_rows;
  const int32_t* tokens = b.ints;
  const int32_t* head_rows = b.ints + rows;
  ASSIGN_OR_RETURN(float* x, scratch_.x.Get(size_t(rows) * d));
  CUDA_RETURN_IF_ERROR(EmbeddingGather(dev_->embeddings.data, dev_->embeddings.type, tokens, rows, d, x, stream_));
  RETURN_IF_ERROR(profiler_->Mark("embedding", stream_));
  const int trunk_layers = cfg_.mtp ? cfg_.mtp->trunk_layers : cfg_.num_blocks;
  ASSIGN_OR_RETURN(float* z, scratch_.z.Get(size_t(head_count) * d));
  // sel: the trunk's picked rows, then each head's; their logits [picked | heads x the heads'
  // picked rows, vocab] and argmax follow the same order.
  const int picked = plan.picked();
  ASSIGN_OR_RETURN(float* sel, scratch_.sel.Get(size_t(picked + b.head_picked) * d));
  PendingResidual residual;
  HeadsLaunch heads;
  // The heads start as soon as the rows they read exist: side by side, they run beside the
  // trunk's remaining blocks.
  const auto start_heads = [&]() -> absl::Status {
    RETURN_IF_ERROR(FlushResidual(rows, &residual, x));
    CUDA_RETURN_IF_ERROR(GatherRows(x, head_rows, head_count, d, z, stream_));
    ASSIGN_OR_RETURN(heads, StartMtpHeads(plan.heads, b.ints + plan.heads_at, b, picked, z, sel));
    return absl::OkStatus();
  };
  // Past the last block only the picked rows are read, unless the heads read its output: a
  // prompt's other rows have advanced the state by then, and skip the block's out_proj and
  // feed-forward (three quarters of its weights' products), which carry its rows into sel.
  const bool heads_read_last = head_count > 0 && trunk_layers == cfg_.num_blocks;
  const ReadRows read{b.idx.picked, picked, sel};
  const bool trim = !heads_read_last && picked < rows;
  for (int l = 0; l < cfg_.num_blocks; ++l) {
    if (head_count > 0 && l == trunk_layers) RETURN_IF_ERROR(start_heads());
    const bool last = l == cfg_.num_blocks - 1;
    RETURN_IF_ERROR(RunBlock(dev_->blocks[l], l, rows, b.idx, &residual, x, trim && last ? &read : nullptr));
  }
  if (heads_read_last) RETURN_IF_ERROR(start_heads());
  if (nm_forked_) {
    nm_forked_ = false;
    RETURN_IF_ERROR(nm_side_.Join(stream_));
  }
  if (trim) {
    RETURN_IF_ERROR(FlushResidual(picked, &residual, sel));
  } else {
    RETURN_IF_ERROR(FlushResidual(rows, &residual, x));
    CUDA_RETURN_IF_ERROR(GatherRows(x, b.idx.picked, picked, d, sel, stream_));
  }
  if (heads.unembedded) {
    RETURN_IF_ERROR(UnembedRows(sel, 0, picked, b));
    return JoinMtpHeads(heads);
  }
  RETURN_IF_ERROR(JoinMtpHeads(heads));
  return UnembedRows(sel, 0, picked + b.head_picked, b);
}

absl::Status ForwardPass::UnembedRows(const float* sel, int first, int n, const PassBuffers& b) {
  float* logits = b.logits + size_t(first) * cfg_.vocab_size;
  RETURN_IF_ERROR(Unembed(sel + size_t(first) * cfg_.hidden_size, n, logits));
  RETURN_IF_ERROR(profiler_->Mark("lm_head + soft cap", stream_));
  CUDA_RETURN_IF_ERROR(ArgmaxRows(logits, n, cfg_.vocab_size, b.argmax + first, stream_));
  return absl::OkStatus();
}

absl::Status ForwardPass::ApplyCommits(const CommitPlan& plan) {
  if (plan.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(profiler_->Mark("start", stream_));
  ASSIGN_OR_RETURN(int32_t* ints, scratch_.commit_ints.Get(plan.packed.size()));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ints, plan.packed.data(), plan.packed.size() * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, stream_));
  ASSIGN_OR_RETURN(float* store, DeferredStore());
  const int n = plan.count;
  for (int l = 0; l < store_.num_layers; ++l) {
    const int seqs = l < cfg_.num_blocks ? n : plan.with_heads;
    if (seqs == 0) continue;
    const DeviceSubset subset{ints, ints + n, ints + 2 * n, seqs, 0};
    const MlstmParams p = SubsetParams(l, store + store_.LayerOffset(l), StoreColumns(), nullptr, subset);
    CUDA_RETURN_IF_ERROR(Tiled() ? MlstmCommit(p, stream_) : MlstmRecurrent(p, stream_));
  }
  RETURN_IF_ERROR(profiler_->Mark("commit", stream_));
  if (profiler_->on) {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    RETURN_IF_ERROR(profiler_->Collect());
  }
  return absl::OkStatus();
}

MlstmParams ForwardPass::LayerParams(int layer, const float* base, const MlstmColumns& c, float* h,
                                     const int32_t* row_begin, const int32_t* slots, int num_seqs) const {
  MlstmParams p;
  p.q = base + c.q;
  p.k = base + c.k;
  p.v = base + c.v;
  p.igate = base + c.igate;
  p.fgate = base + c.fgate;
  p.proj_stride = c.stride;
  p.h = h;
  p.state = states_->Ref(layer);
  p.seq_row_begin = row_begin;
  p.seq_slot = slots;
  p.num_seqs = num_seqs;
  p.heads = cfg_.num_heads;
  p.dqk = cfg_.qk_head_dim();
  p.dv = cfg_.v_head_dim();
  p.gate_cap = cfg_.gate_soft_cap ? static_cast<float>(*cfg_.gate_soft_cap) : 0.0f;
  p.eps = static_cast<float>(cfg_.eps);
  return p;
}

// logits [n, vocab] = soft_cap(lm_head(out_norm(sel))) for sel [n, d].
absl::Status ForwardPass::Unembed(const float* sel, int n, float* logits) {
  const int d = cfg_.hidden_size;
  ASSIGN_OR_RETURN(float* normed, block_->normed.Get(size_t(n) * d));
  ASSIGN_OR_RETURN(const Bf16Activation bf16, Bf16Input(n));
  CUDA_RETURN_IF_ERROR(RmsNorm(sel, dev_->out_norm_w, nullptr, n, d, static_cast<float>(cfg_.norm_eps),
                               Fp32InputFor(n, dev_->lm_head, normed), bf16, stream_));
  RETURN_IF_ERROR(Linear(normed, bf16, n, dev_->lm_head, nullptr, false, logits));
  if (cfg_.output_logit_soft_cap) {
    CUDA_RETURN_IF_ERROR(
        SoftCap(logits, int64_t(n) * cfg_.vocab_size, static_cast<float>(*cfg_.output_logit_soft_cap), stream_));
  }
  return absl::OkStatus();
}

// Runs heads 1..n-1 on z (the sub-batch's rows of the residual stream the heads read) and
// gathers each head's picked rows into their places in sel (after the trunk's `trunk_picked`);
// nothing without head sequences. Heads in turn run on the pass's stream; heads side by side on
// lanes that JoinMtpHeads joins.
absl::StatusOr<ForwardPass::HeadsLaunch> ForwardPass::StartMtpHeads(const IndexPlan& plan, const int32_t* at,
                                                                    const PassBuffers& b, int trunk_picked,
                                                                    const float* z, float* sel) {
  HeadsLaunch launch;
  if (plan.slots.empty()) return launch;
  const int rows = plan.rows(), picked = static_cast<int>(plan.picked.size());
  const Indices idx = plan.Resolve(at, b.store);
  float* head_sel = sel + size_t(trunk_picked) * cfg_.hidden_size;
  const auto records = [&](int head) {
    Indices own = idx;
    own.verify_coef = b.idx.verify_coef + size_t(head) * b.verify_coef_per_head;
    return own;
  };
  if (!HeadsSideBySide(rows, idx)) {
    for (int head = 1; head <= num_mtp_heads(); ++head) {
      RETURN_IF_ERROR(RunHead(head, rows, picked, records(head), z, head_sel));
    }
    RETURN_IF_ERROR(profiler_->Mark("mtp heads", stream_));
    return launch;
  }
  // Each head on a lane of its own (stream, buffers, verify records), beside the trunk's last
  // blocks and each other: at batch 1-2 a block is a chain of small dependent kernels on a few
  // SMs, so blocks one after another cost their chains' latencies added up. Where a head's rows
  // take the GEMV for the unembedding too, its lane unembeds them: one unembedding of every row
  // after the join was one more chain on the critical path.
  launch.unembedded = GemvOnly(picked, dev_->lm_head);
  while (static_cast<int>(head_lanes_.size()) < num_mtp_heads()) {
    head_lanes_.push_back(std::make_unique<HeadLane>(&scratch_.moves));
  }
  const cudaStream_t main = stream_;
  for (int head = 1; head <= num_mtp_heads(); ++head) {
    HeadLane& lane = *head_lanes_[head - 1];
    ASSIGN_OR_RETURN(const cudaStream_t side, lane.stream.Fork(main));
    ++launch.lanes;
    stream_ = side;
    block_ = &lane.scratch;
    absl::Status status = RunHead(head, rows, picked, records(head), z, head_sel);
    if (status.ok() && launch.unembedded) status = UnembedRows(sel, trunk_picked + (head - 1) * picked, picked, b);
    stream_ = main;
    block_ = &scratch_.trunk;
    RETURN_IF_ERROR(status);
  }
  return launch;
}

absl::Status ForwardPass::JoinMtpHeads(const HeadsLaunch& launch) {
  for (int lane = 0; lane < launch.lanes; ++lane) RETURN_IF_ERROR(head_lanes_[lane]->stream.Join(stream_));
  return absl::OkStatus();
}

absl::Status ForwardPass::RunHead(int head, int rows, int picked, const Indices& idx, const float* z, float* sel) {
  const int d = cfg_.hidden_size;
  ASSIGN_OR_RETURN(float* hx, block_->head_x.Get(size_t(rows) * d));
  if (cfg_.mtp->head_type == MtpHeadType::kMlstmBlock) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(hx, z, size_t(rows) * d * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
    PendingResidual residual;
    RETURN_IF_ERROR(RunBlock(dev_->head_blocks[head - 1], cfg_.num_blocks + head - 1, rows, idx, &residual, hx));
    RETURN_IF_ERROR(FlushResidual(rows, &residual, hx));
  } else {
    ASSIGN_OR_RETURN(const Bf16Activation bf16, Bf16Input(rows));
    if (bf16.data != nullptr) CUDA_RETURN_IF_ERROR(ToBf16Activation(z, int64_t(rows) * d, bf16, stream_));
    RETURN_IF_ERROR(Linear(z, bf16, rows, dev_->head_linear[head - 1], nullptr, false, hx));
  }
  CUDA_RETURN_IF_ERROR(GatherRows(hx, idx.picked, picked, d, sel + size_t(head - 1) * picked * d, stream_));
  return absl::OkStatus();
}

// Only where the heads' kernels share nothing but what they read: mLSTM blocks whose products
// all take the GEMV, no prompt rows (their chunkwise kernels have a side stream and buffers of
// the pass's own), stages untimed (the profiler's events are on the pass's stream).
bool ForwardPass::HeadsSideBySide(int rows, const Indices& idx) const {
  if (num_mtp_heads() < 2 || profiler_->on || cfg_.mtp->head_type != MtpHeadType::kMlstmBlock ||
      idx.multi.count > 0) {
    return false;
  }
  for (const DeviceBlock& w : dev_->head_blocks) {
    if (!GemvOnly(rows, w.proj) || !GemvOnly(rows, w.out_proj) || !GemvOnly(rows, w.up) || !GemvOnly(rows, w.down)) {
      return false;
    }
  }
  return true;
}

// The mLSTM recurrence of one layer over the batch: deferred sequences through the verify
// kernel, the others through the step kernel (one token each) or the chunkwise kernel (the
// recurrent one for heads too large for its shared memory); heads too large for the tiled
// kernels take the recurrent kernel for all.
absl::Status ForwardPass::RunMlstm(int layer, int rows, const float* proj, float* h, const Indices& idx,
                                   bool bf16_products) {
  if (!Tiled()) {
    MlstmParams p = LayerParams(layer, proj, ProjMlstmColumns(), h, idx.row_begin, idx.slots, idx.num_seqs);
    p.seq_defer = idx.defer;
    CUDA_RETURN_IF_ERROR(MlstmRecurrent(p, stream_));
    return profiler_->Mark("mlstm recurrent", stream_);
  }
  if (idx.deferred.count > 0) {
    MlstmParams p = SubsetParams(layer, proj, ProjMlstmColumns(), h, idx.deferred);
    p.verify_coef = idx.verify_coef;
    // The verified rows' inputs go to the store for their commit from inside the prep and the
    // verify: a gather kernel of their own cost a launch per layer.
    float* base = idx.store + store_.LayerOffset(layer);
    const MlstmColumns sc = StoreColumns();
    p.keep_k = base + sc.k;
    p.keep_v = base + sc.v;
    p.keep_igate = base + sc.igate;
    p.keep_fgate = base + sc.fgate;
    p.keep_begin = idx.deferred.keep_begin;
    p.pend_stride = sc.stride;
    if (idx.deferred.any_pending) {
      // The fused commit: the prep advances n and m, the verify applies the factors to C.
      p.pend_k = base + sc.k;
      p.pend_v = base + sc.v;
      p.pend_igate = base + sc.igate;
      p.pend_fgate = base + sc.fgate;
      p.pend_begin = idx.deferred.pend_begin;
      p.pend_end = idx.deferred.pend_end;
    }
    CUDA_RETURN_IF_ERROR(MlstmVerifyPrep(p, idx.deferred.max_tokens, stream_));
    CUDA_RETURN_IF_ERROR(MlstmVerify(p, idx.deferred.max_tokens, stream_));
    RETURN_IF_ERROR(profiler_->Mark("mlstm verify", stream_));
  }
  // The prompts' rows (multi) and the one-token rows (single) of the layer.
  MlstmParams multi = SubsetParams(layer, proj, ProjMlstmColumns(), h, idx.multi);
  multi.bf16_products = bf16_products;
  const MlstmParams single = SubsetParams(layer, proj, ProjMlstmColumns(), h, idx.single);
  // New one-chunk prompts beside decode rows, the common serving pass: their blocks join the step
  // kernel's launch, spread among its blocks, instead of a chain of their own that waited for
  // SMs behind the step's (mlstm_step.cu says why).
  if (idx.single.count > 0 && idx.multi.count > 0 && MlstmFreshChunkApplies(multi, idx.multi.max_tokens)) {
    bool left = false;
    CUDA_RETURN_IF_ERROR(MlstmStepBesideFresh(single, multi, idx.multi.max_tokens, &left, stream_));
    RETURN_IF_ERROR(profiler_->Mark("mlstm step + new prompts", stream_));
    return left ? AdvanceNmBeside(single, "mlstm step + new prompts") : absl::OkStatus();
  }
  // Other mixed steps: the prompts' chunkwise kernels, latency-bound on few blocks, run on a side
  // stream beside the decode rows' bandwidth-bound step kernel (in turn while stages are timed).
  const bool overlap = idx.single.count > 0 && idx.multi.count > 0 && !profiler_->on;
  cudaStream_t multi_stream = stream_;
  if (overlap) {
    ASSIGN_OR_RETURN(multi_stream, side_.Fork(stream_));
  }
  if (idx.multi.count > 0) {
    if (MlstmFreshChunkApplies(multi, idx.multi.max_tokens)) {
      CUDA_RETURN_IF_ERROR(MlstmFreshChunk(multi, idx.multi.max_tokens, multi_stream));
      RETURN_IF_ERROR(profiler_->Mark("mlstm chunkwise", stream_));
    } else if (MlstmChunkwiseSupports(multi.dqk)) {
      ASSIGN_OR_RETURN(multi.chunk_p, scratch_.chunk_p.Get(size_t(rows) * multi.heads * kChunkTokens));
      ASSIGN_OR_RETURN(multi.chunk_gates, scratch_.chunk_gates.Get(size_t(rows) * multi.heads * kChunkGateFields));
      ASSIGN_OR_RETURN(multi.chunk_carry, scratch_.chunk_carry.Get(size_t(ChunkCarrySlots(rows)) * multi.heads *
                                                                   multi.dqk * (multi.dv + 1)));
      CUDA_RETURN_IF_ERROR(MlstmChunkwise(multi, idx.multi.max_tokens, multi_stream));
      RETURN_IF_ERROR(profiler_->Mark("mlstm chunkwise", stream_));
    } else {
      CUDA_RETURN_IF_ERROR(MlstmRecurrent(multi, multi_stream));
      RETURN_IF_ERROR(profiler_->Mark("mlstm recurrent", stream_));
    }
  }
  if (idx.single.count > 0) {
    bool left = false;
    CUDA_RETURN_IF_ERROR(MlstmStep(single, &left, stream_));
    RETURN_IF_ERROR(profiler_->Mark("mlstm step", stream_));
    if (left) RETURN_IF_ERROR(AdvanceNmBeside(single, "mlstm step"));
  }
  if (overlap) RETURN_IF_ERROR(side_.Join(stream_));
  return absl::OkStatus();
}

// The normaliser of a step past one wave (MlstmStep's nm_left) on a side stream: nothing else in
// the pass reads this layer's n and m, so it runs beside the layer's remaining kernels instead
// of between the step and the head norm, on their critical path. It reads k and the gates from
// the block's projection, so the pass's stream joins it before the next block overwrites that
// (RunBlock), and after the last. In turn, on the pass's stream, while stages are timed (as part
// of `stage`).
absl::Status ForwardPass::AdvanceNmBeside(const MlstmParams& step, const char* stage) {
  if (profiler_->on) {
    CUDA_RETURN_IF_ERROR(MlstmNormalizer(step, stream_));
    return profiler_->Mark(stage, stream_);
  }
  ASSIGN_OR_RETURN(const cudaStream_t side, nm_side_.Fork(stream_));
  CUDA_RETURN_IF_ERROR(MlstmNormalizer(step, side));
  nm_forked_ = true;
  return absl::OkStatus();
}

MlstmParams ForwardPass::SubsetParams(int layer, const float* base, const MlstmColumns& c, float* h,
                                      const DeviceSubset& s) const {
  MlstmParams p = LayerParams(layer, base, c, h, s.begin, s.slots, s.count);
  p.seq_row_end = s.end;
  p.seq_fresh = s.fresh;
  p.all_fresh = s.all_fresh;
  return p;
}

// Adds a pending residual into x before anything but a block reads x.
absl::Status ForwardPass::FlushResidual(int rows, PendingResidual* residual, float* x) {
  if (residual->t.t != nullptr) {
    CUDA_RETURN_IF_ERROR(CombineSplit(residual->t, residual->bias, rows, residual->n, true, x, stream_));
  }
  *residual = PendingResidual{};
  return absl::OkStatus();
}

// x (rows of the residual stream) through one block; `residual`: in, the previous block's
// pending product, folded in first; out, this block's (over read's rows, in read->x, when set).
absl::Status ForwardPass::RunBlock(const DeviceBlock& w, int layer, int rows, const Indices& idx,
                                   PendingResidual* residual, float* x, const ReadRows* read) {
  const int d = cfg_.hidden_size, heads = cfg_.num_heads, v = cfg_.v_dim(), ffn = cfg_.ffn_dim();
  const float norm_eps = static_cast<float>(cfg_.norm_eps);
  ASSIGN_OR_RETURN(float* xn, block_->xn.Get(size_t(rows) * d));
  ASSIGN_OR_RETURN(const Bf16Activation bf16, Bf16Input(rows));
  ASSIGN_OR_RETURN(float* proj, block_->proj.Get(size_t(rows) * cols_.width));
  ASSIGN_OR_RETURN(float* h, block_->h.Get(size_t(rows) * v));
  ASSIGN_OR_RETURN(float* hg, block_->hg.Get(size_t(rows) * v));
  ASSIGN_OR_RETURN(float* act, block_->act.Get(size_t(rows) * ffn));
  // A normaliser forked beside an earlier block may still read that block's k and gates in `proj`,
  // which this block's projection overwrites. Joined before the norm rather than the GEMM, whose
  // weight stages load before its wait; it has had the rest of its own block to run beside.
  if (nm_forked_) RETURN_IF_ERROR(nm_side_.Join(stream_));

  // mLSTM sub-layer: x += out_proj(sigmoid(o) * MultiHeadNorm(mLSTM(q, k, v, ĩ, f̃))).
  if (residual->t.t != nullptr) {
    CUDA_RETURN_IF_ERROR(ResidualRmsNorm(x, residual->t, residual->bias, w.norm_mlstm_w, w.norm_mlstm_b, rows, d,
                                         norm_eps, Fp32InputFor(rows, w.proj, xn), bf16, stream_));
  } else {
    CUDA_RETURN_IF_ERROR(RmsNorm(x, w.norm_mlstm_w, w.norm_mlstm_b, rows, d, norm_eps, Fp32InputFor(rows, w.proj, xn),
                                 bf16, stream_));
  }
  RETURN_IF_ERROR(profiler_->Mark("rmsnorm", stream_));
  // proj: [rows, q | k | v | o | ĩ | f̃] from xn [rows, d]
  RETURN_IF_ERROR(Linear(xn, bf16, rows, w.proj, w.proj_b, false, proj));
  RETURN_IF_ERROR(profiler_->Mark("gemm q|k|v|o|gates", stream_));
  // The tiled verify keeps them itself (RunMlstm).
  if (idx.num_defer_rows > 0 && !Tiled()) {
    CUDA_RETURN_IF_ERROR(GatherRowSegments(proj, cols_.width, cols_.k, cfg_.qk_dim() + v, cols_.igate, 2 * heads,
                                           idx.defer_src, idx.defer_dst, idx.num_defer_rows,
                                           idx.store + store_.LayerOffset(layer), stream_));
  }
  const bool bf16_products = precision_ == Precision::kBf16 && w.proj.type == WeightType::kBF16;
  RETURN_IF_ERROR(RunMlstm(layer, rows, proj, h, idx, bf16_products));
  const int32_t* src_rows = nullptr;  // the rows of h and proj that go on, when not all
  if (read != nullptr) {
    CUDA_RETURN_IF_ERROR(GatherRows(x, read->rows, read->count, d, read->x, stream_));
    src_rows = read->rows;
    rows = read->count;
    x = read->x;
  }
  // hg: [rows, heads * dv], normed per head and gated by sigmoid(o)
  CUDA_RETURN_IF_ERROR(HeadNormGate(h, proj + cols_.o, cols_.width, src_rows, w.mh_norm_w, w.mh_norm_b, rows, heads,
                                    cfg_.v_head_dim(), norm_eps, Fp32InputFor(rows, w.out_proj, hg), bf16, stream_));
  RETURN_IF_ERROR(profiler_->Mark("head norm * sigmoid(o)", stream_));
  // A GEMM's combine rides along with the next pass over x or gu.
  ASSIGN_OR_RETURN(const GemmPlanes out_pair, LinearUncombined(hg, bf16, rows, w.out_proj, w.out_proj_b, true, x));
  RETURN_IF_ERROR(profiler_->Mark("gemm out_proj", stream_));

  // Feed-forward sub-layer: x += down(silu(up_gate(xn)) * up(xn)).
  if (out_pair.t != nullptr) {
    CUDA_RETURN_IF_ERROR(ResidualRmsNorm(x, out_pair, w.out_proj_b, w.norm_ffn_w, w.norm_ffn_b, rows, d, norm_eps,
                                         Fp32InputFor(rows, w.up, xn), bf16, stream_));
  } else {
    CUDA_RETURN_IF_ERROR(
        RmsNorm(x, w.norm_ffn_w, w.norm_ffn_b, rows, d, norm_eps, Fp32InputFor(rows, w.up, xn), bf16, stream_));
  }
  RETURN_IF_ERROR(profiler_->Mark("rmsnorm", stream_));
  ASSIGN_OR_RETURN(const Bf16Activation act_bf16, UpSwiGlu(w, xn, bf16, rows, act));
  ASSIGN_OR_RETURN(const GemmPlanes down_pair, LinearUncombined(act, act_bf16, rows, w.down, w.down_b, true, x));
  *residual = PendingResidual{down_pair, w.down_b, d};
  RETURN_IF_ERROR(profiler_->Mark("gemm down", stream_));
  return absl::OkStatus();
}

absl::StatusOr<Bf16Activation> ForwardPass::UpSwiGlu(const DeviceBlock& w, const float* xn, const Bf16Activation& bf16,
                                                     int rows, float* act) {
  const int ffn = cfg_.ffn_dim();
  float* act_fp32 = Fp32InputFor(rows, w.down, act);
  if (w.up_interleaved && w.up.type == WeightType::kBF16 && UsesGemv(rows, w.up)) {
    // The GEMV forms the activation itself. Its bf16 form (what the down GEMV reads in the bf16
    // precision) gets a buffer of its own: bf16 still holds the x that other blocks are reading.
    const bool bf16_x = precision_ == Precision::kBf16;
    Bf16Activation act_bf16{nullptr, false};
    if (bf16_x) {
      ASSIGN_OR_RETURN(act_bf16.data, block_->bf16_act.Get(size_t(rows) * ffn * 2));
    }
    CUDA_RETURN_IF_ERROR(GemvBf16SwiGlu(bf16_x ? bf16.data : static_cast<const void*>(xn), bf16_x, w.up.data, w.up_b,
                                        rows, w.up.rows, w.up.cols, act_fp32, act_bf16, stream_));
    RETURN_IF_ERROR(profiler_->Mark("gemm up_gate|up", stream_));
    return act_bf16;
  }
  if (w.up_interleaved && w.up.type == WeightType::kBF16 && bf16.data != nullptr && !bf16.pair &&
      !UsesGemv(rows, w.up)) {
    ASSIGN_OR_RETURN(void* act_data, block_->bf16_act.Get(size_t(rows) * ffn * 2));
    const SwiGluEpilogue epilogue{w.up_b, act_fp32, Bf16Activation{act_data, false}};
    ASSIGN_OR_RETURN(float* t, block_->gemm_planes.Get(size_t(rows) * lt_->MaxKSlices(rows) * w.up.rows));
    ASSIGN_OR_RETURN(const int slices,
                     lt_->RunSwiGlu(w.up.data, w.up.rows, w.up.cols, bf16.data, rows, t, epilogue, stream_));
    RETURN_IF_ERROR(profiler_->Mark("gemm up_gate|up", stream_));
    if (slices > 0) {
      CUDA_RETURN_IF_ERROR(SwiGlu(GemmPlanes{t, slices}, w.up_b, true, rows, ffn, act_fp32, epilogue.bf16, stream_));
      RETURN_IF_ERROR(profiler_->Mark("swiglu", stream_));
    }
    return epilogue.bf16;
  }
  // gu: [rows, up_gate | up], interleaved as w.up's rows
  ASSIGN_OR_RETURN(float* gu, block_->gu.Get(size_t(rows) * 2 * ffn));
  ASSIGN_OR_RETURN(const GemmPlanes gu_pair, LinearUncombined(xn, bf16, rows, w.up, w.up_b, false, gu));
  RETURN_IF_ERROR(profiler_->Mark("gemm up_gate|up", stream_));
  // Without planes gu holds the product, bias included.
  const bool planes = gu_pair.t != nullptr;
  CUDA_RETURN_IF_ERROR(SwiGlu(planes ? gu_pair : GemmPlanes{gu, 1}, planes ? w.up_b : nullptr, w.up_interleaved, rows,
                              ffn, act_fp32, bf16, stream_));
  RETURN_IF_ERROR(profiler_->Mark("swiglu", stream_));
  return bf16;
}

// y[rows, n] (+)= x[rows, k] w[n, k]ᵀ (+ bias). `x_bf16` is x's bf16 form (no data when no
// matrix is bf16).
absl::Status ForwardPass::Linear(const float* x, const Bf16Activation& x_bf16, int rows, const DeviceMatrix& w,
                                 const float* bias, bool accumulate, float* y) {
  ASSIGN_OR_RETURN(const GemmPlanes t, LinearUncombined(x, x_bf16, rows, w, bias, accumulate, y));
  if (t.t != nullptr) CUDA_RETURN_IF_ERROR(CombineSplit(t, bias, rows, w.rows, accumulate, y, stream_));
  return absl::OkStatus();
}

// Linear, except that a product through the bf16 GEMM comes back uncombined: returns its
// planes [1, 2 or 4, rows, n] (valid until the next Linear) for the caller to add up with
// bias and y, and leaves y alone; no planes (t null) when y already holds the product.
absl::StatusOr<GemmPlanes> ForwardPass::LinearUncombined(const float* x, const Bf16Activation& x_bf16, int rows,
                                                         const DeviceMatrix& w, const float* bias, bool accumulate,
                                                         float* y) {
  const int n = w.rows, k = w.cols;
  if (rows == 0) return GemmPlanes{};
  if (w.type == WeightType::kF32) {
    if (rows <= kGemvMaxRows) {
      CUDA_RETURN_IF_ERROR(
          GemvSmallRows(x, static_cast<const float*>(w.data), bias, rows, n, k, accumulate, y, stream_));
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
  ASSIGN_OR_RETURN(float* t, block_->gemm_planes.Get(size_t(cols) * lt_->MaxKSlices(cols) * n));
  if (forms == 1 && !accumulate) {
    // One plane with the bias is y itself: the GEMM writes it there where its plan allows.
    ASSIGN_OR_RETURN(const int slices, lt_->RunWhole(w.data, n, k, x_bf16.data, cols, bias, y, t, stream_));
    return slices == 0 ? GemmPlanes{} : GemmPlanes{t, slices};
  }
  ASSIGN_OR_RETURN(const int slices, lt_->Run(w.data, n, k, x_bf16.data, cols, t, stream_));
  return GemmPlanes{t, forms * slices};
}

bool ForwardPass::GemvOnly(int rows, const DeviceMatrix& w) {
  return w.type == WeightType::kF32 ? rows <= kGemvMaxRows : UsesGemv(rows, w);
}

// Whether Linear takes the GEMV for `rows` rows of bf16 weights w.
bool ForwardPass::UsesGemv(int rows, const DeviceMatrix& w) {
  const bool small = int64_t(w.rows) * w.cols <= kSmallMatrixElems;
  return (rows <= kBf16GemvMaxRows || (small && rows <= kGemvMaxRows)) && w.cols % 8 == 0;
}
// Whether Linear over `rows` rows of w reads only the bf16 form of its input (the GEMM, and in
// the bf16 precision the GEMV too), not the fp32 values: then the kernel that makes the input
// need not store them.
bool ForwardPass::Bf16InputOnly(int rows, const DeviceMatrix& w) const {
  return w.type == WeightType::kBF16 && (precision_ == Precision::kBf16 || !UsesGemv(rows, w));
}
// The fp32 buffer for an input of Linear over w, or null when it only reads the bf16 form.
float* ForwardPass::Fp32InputFor(int rows, const DeviceMatrix& w, float* buffer) const {
  return Bf16InputOnly(rows, w) ? nullptr : buffer;
}

// The bf16 form (the precision's) of activations of `rows` rows of any width; no data when
// no matrix is bf16.
absl::StatusOr<Bf16Activation> ForwardPass::Bf16Input(int rows) {
  const bool pair = precision_ == Precision::kExact;
  if (!dev_->any_bf16) return Bf16Activation{nullptr, pair};
  const int widest = std::max({cfg_.hidden_size, cfg_.v_dim(), cfg_.ffn_dim()});
  ASSIGN_OR_RETURN(void* data, block_->bf16_input.Get(size_t(pair ? 2 : 1) * rows * widest * 2));
  return Bf16Activation{data, pair};
}


}  // namespace xlserve::kernels
