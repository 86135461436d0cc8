#include "engine/parallel/tensor_parallel_plan.h"

#include <algorithm>
#include <numeric>
#include <string>

namespace xlserve {

int TensorParallelPlan::ReduceParts(const ModelConfig& config) {
  const int common = std::gcd(config.num_heads, config.ffn_dim());
  int parts = 1;
  while (parts < kMaxRanks && common % (parts * 2) == 0) parts *= 2;
  return parts;
}

absl::StatusOr<TensorParallelPlan> TensorParallelPlan::Create(const ModelConfig& config, int ranks) {
  const int parts = ReduceParts(config);
  if (ranks < 1 || ranks > parts || parts % ranks != 0) {
    std::string allowed;
    for (int n = 1; n <= parts; n *= 2) allowed += (allowed.empty() ? "" : ", ") + std::to_string(n);
    return absl::InvalidArgumentError("tensor parallel over " + std::to_string(ranks) + " ranks: this model (" +
                                      std::to_string(config.num_heads) + " heads, FFN " +
                                      std::to_string(config.ffn_dim()) + ") splits over " + allowed);
  }
  return TensorParallelPlan(config, ranks, parts);
}

ShardRange TensorParallelPlan::vocab(int rank) const {
  const int64_t base = config_.vocab_size / ranks_;
  const int64_t extra = config_.vocab_size % ranks_;
  return {base * rank + std::min<int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

}  // namespace xlserve
