// CpuBackend: the readable, exact reference implementation of the xLSTM forward pass.
//
// fp32 maths throughout (weights widened from F32/BF16/F16 as they are read; in the bf16
// precision the inputs of products with bf16 weights are rounded to bf16), multithreaded
// over output features and over (sequence, head) pairs. It defines the numbers every other
// backend must reproduce, and is the backend CI runs.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_weights.h"
#include "engine/parallel/communicator.h"
#include "engine/parallel/in_process_group.h"
#include "engine/parallel/rank_weights.h"
#include "engine/parallel/tensor_parallel_plan.h"
#include "engine/util/thread_pool.h"

namespace xlserve {

struct CpuBackendOptions {
  int num_threads = 0;  // 0: one per hardware thread
  // Tokens per chunk of the chunkwise mLSTM during prefill. Any value >= 1 gives the same
  // result up to rounding; 1 turns prefill into plain recurrent steps.
  int chunk_size = 64;
  // Products with bf16 weights (Precision): kExact multiplies the fp32 activations; kBf16
  // rounds them to bf16 first, the reference of the CUDA backend's bf16 precision.
  Precision precision = Precision::kExact;
  // Ranks of a tensor-parallel split (TensorParallelPlan): each a thread with its own heads,
  // FFN slice and vocabulary range, their partial sums added by an in-process all-reduce. It
  // computes the same bits as one rank, which makes it the exact emulation of a multi-GPU split.
  int tensor_parallel = 1;
};

class CpuBackend final : public Backend {
 public:
  // `weights` is shared and must stay immutable; the backend keeps a reference to it.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(
      std::shared_ptr<const ModelWeights> weights, const CpuBackendOptions& options);

  std::string_view name() const override { return "cpu"; }
  const StateLayout& state_layout() const override { return layout_; }
  Precision precision() const override { return options_.precision; }
  absl::Status AllocateSlots(int num_slots) override;
  int num_slots() const override { return num_slots_; }
  absl::Status ResetSlot(int slot) override;
  absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) override;
  absl::Status Commit(std::span<const CommitInput> commits) override;
  bool SupportsSpeculation() const override { return true; }
  int num_mtp_heads() const override {
    return weights_->config.mtp ? weights_->config.mtp->num_heads - 1 : 0;
  }
  int64_t snapshot_bytes() const override { return layout_.slot_floats() * static_cast<int64_t>(sizeof(float)); }
  absl::Status AllocateSnapshots(int device, int host) override;
  absl::Status SaveSnapshot(int slot, SnapshotRef dst) override;
  absl::Status RestoreSnapshot(SnapshotRef src, int slot) override;
  absl::Status CopySnapshot(SnapshotRef src, SnapshotRef dst) override;
  absl::Status ReadSlot(int slot, std::span<float> out) const override;
  absl::Status WriteSlot(int slot, std::span<const float> in) override;

 private:
  CpuBackend(std::shared_ptr<const ModelWeights> weights, const CpuBackendOptions& options,
             TensorParallelPlan plan);

  // The mLSTM inputs of one stateful layer for the tokens of one deferred forward.
  struct DeferredLayer {
    std::vector<float> k, v, igate, fgate;  // [tokens, qk_dim], [tokens, v_dim], [tokens, heads] x2
  };
  // What Commit() needs for one slot: per stateful layer, the inputs of its last deferred forward.
  struct DeferredSlot {
    int num_tokens = 0;
    std::vector<DeferredLayer> layers;
  };

  // One tensor-parallel rank: its weights, its threads and its end of the group.
  struct Rank {
    int index = 0;
    RankWeights weights;
    ThreadPool* pool = nullptr;
    Communicator* comm = nullptr;
  };
  // What every rank of a Forward reads: the batch, sequence i's rows [row_begin[i],
  // row_begin[i+1]), and the rows whose logits go to `out` (sized before the ranks run; each
  // rank writes its vocabulary columns).
  struct Pass {
    std::span<const SequenceInput> batch;
    std::vector<int64_t> row_begin;
    std::vector<int64_t> picked;
    std::vector<int> picked_seq;
    bool any_heads = false;
    ForwardOutput* out = nullptr;
  };

  // OUT_OF_RANGE for a bad slot; INVALID_ARGUMENT when buffer_floats (>= 0) is not a slot's size.
  absl::Status CheckSlot(int slot, const char* op, int64_t buffer_floats) const;
  // Rank r's share of a Forward: embeddings, blocks, unembedding, MTP heads.
  void RunRank(Rank& r, const Pass& pass);
  // Runs one block over all rows of x ([rows, d]) on the rank's heads and FFN slice; sequence
  // i's rows use the state of slot batch[i].slot at `layer`.
  void RunBlock(Rank& r, const BlockWeights& w, int layer, std::span<const SequenceInput> batch,
                const std::vector<int64_t>& row_begin, std::vector<float>& x);
  // Runs MTP heads 1..n-1 for the sequences that asked for them, from z (the residual stream
  // at depth mtp.trunk_layers), writing their logits at the picked rows.
  void RunMtpHeads(Rank& r, const Pass& pass, const std::vector<float>& z);
  // out_norm, unembedding and soft cap of the given rows of x into the rank's vocabulary
  // columns of `logits` ([n, vocab]).
  void Unembed(Rank& r, const std::vector<float>& x, const std::vector<int64_t>& rows, float* logits);
  float* SlotData(int slot) { return states_.data() + slot * layout_.slot_floats(); }
  // The buffer `ref` names, allocated on first use (both tiers are host memory here, so an
  // unused buffer costs nothing); OUT_OF_RANGE for a bad reference.
  absl::StatusOr<std::vector<float>*> Snapshot(SnapshotRef ref, const char* op);

  std::shared_ptr<const ModelWeights> weights_;
  CpuBackendOptions options_;
  StateLayout layout_;
  ThreadPool pool_;
  TensorParallelPlan plan_;
  SingleRank single_;
  std::unique_ptr<InProcessGroup> group_;  // with more than one rank
  std::vector<std::unique_ptr<ThreadPool>> rank_pools_;  // ranks' own threads, with more than one
  std::vector<Rank> ranks_;
  int num_slots_ = 0;
  std::vector<float> states_;
  std::vector<DeferredSlot> deferred_;  // by slot; num_tokens 0 when nothing is pending
  std::vector<std::vector<float>> snapshots_[2];  // by SnapshotTier, then index; empty until used
};

}  // namespace xlserve
