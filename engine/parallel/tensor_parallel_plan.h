// TensorParallelPlan: how one model splits over `ranks` tensor-parallel ranks (docs/design.md §10).
//
// Each rank owns a contiguous group of mLSTM heads (their q/k/v/o-gate/i-gate/f-gate rows, their
// slice of the multi-head norm, their columns of out_proj, their state) and a contiguous slice
// of the FFN (rows of up_gate and up, columns of down), and a contiguous range of the vocabulary
// (rows of lm_head). Norms, embeddings and the residual stream are replicated; out_proj and
// down leave partial sums that an all-reduce adds up.
//
// Summation order: the reduced products (out_proj over v_dim, down over ffn_dim) split their
// reduction into `reduce_parts()` equal contiguous parts, sum each part's dot product, and add
// the parts in a pairwise tree ((p0 + p1) + (p2 + p3)). A rank holds a whole subtree and the
// all-reduce adds the ranks' partials in the same tree, so every rank count the model allows
// gives the same bits as one rank.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"

namespace xlserve {

struct ShardRange {
  int64_t begin = 0;
  int64_t count = 0;
};

class TensorParallelPlan {
 public:
  static constexpr int kMaxRanks = 8;

  // INVALID_ARGUMENT, saying which ranks counts the model allows, unless `ranks` is a power of
  // two that divides reduce_parts(config).
  static absl::StatusOr<TensorParallelPlan> Create(const ModelConfig& config, int ranks);
  // The largest power of two <= kMaxRanks dividing both num_heads and ffn_dim.
  static int ReduceParts(const ModelConfig& config);

  int ranks() const { return ranks_; }
  int reduce_parts() const { return reduce_parts_; }
  // The parts of a reduced product that one rank sums: its subtree's leaves.
  int reduce_parts_per_rank() const { return reduce_parts_ / ranks_; }

  ShardRange heads(int rank) const { return Even(config_.num_heads, rank); }
  ShardRange qk_columns(int rank) const { return Scaled(heads(rank), config_.qk_head_dim()); }
  ShardRange v_columns(int rank) const { return Scaled(heads(rank), config_.v_head_dim()); }
  ShardRange ffn(int rank) const { return Even(config_.ffn_dim(), rank); }
  // The vocabulary need not divide: the first ranks take one id more.
  ShardRange vocab(int rank) const;

 private:
  TensorParallelPlan(const ModelConfig& config, int ranks, int reduce_parts)
      : config_(config), ranks_(ranks), reduce_parts_(reduce_parts) {}
  ShardRange Even(int64_t total, int rank) const { return {total / ranks_ * rank, total / ranks_}; }
  static ShardRange Scaled(ShardRange r, int64_t by) { return {r.begin * by, r.count * by}; }

  ModelConfig config_;
  int ranks_;
  int reduce_parts_;
};

}  // namespace xlserve
