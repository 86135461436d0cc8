// RankWeights: the weight tensors one tensor-parallel rank computes with (TensorParallelPlan).
//
// Row slices (q, k, v, the gates, the multi-head norm, up_gate, up, lm_head) are views into
// the full weights; column slices (out_proj, down) are copies, since a column block of a
// row-major matrix is not contiguous. Biases of out_proj and down stay whole: they are added
// once, after the all-reduce. Norms, embeddings and the linear MTP heads are the full model's.
#pragma once

#include <vector>

#include "engine/model/model_weights.h"
#include "engine/parallel/tensor_parallel_plan.h"

namespace xlserve {

struct RankWeights {
  RankWeights() = default;
  RankWeights(RankWeights&&) = default;
  RankWeights& operator=(RankWeights&&) = default;
  RankWeights(const RankWeights&) = delete;  // views point into `copies`
  RankWeights& operator=(const RankWeights&) = delete;

  std::vector<BlockWeights> blocks;
  std::vector<BlockWeights> mtp_block_heads;
  TensorView lm_head;  // rows of this rank's vocabulary range
  std::vector<std::vector<char>> copies;
};

// `full` must outlive the result.
RankWeights ShardWeights(const ModelWeights& full, const TensorParallelPlan& plan, int rank);

}  // namespace xlserve
