#include "bench/interleaved_timing.h"

#include <algorithm>
#include <string>

#include "base/status_macros.h"

namespace xlserve::bench {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Block {
  double mid = 0, step = 0;  // seconds: the block's midpoint on the clock, its mean step
};

absl::StatusOr<Block> TimeBlock(const std::function<absl::Status()>& step, int steps,
                                const std::function<double()>& clock) {
  const double start = clock();
  for (int s = 0; s < steps; ++s) RETURN_IF_ERROR(step());
  const double end = clock();
  return Block{(start + end) / 2, (end - start) / steps};
}

}  // namespace

absl::StatusOr<InterleavedTiming> TimeInterleaved(const std::function<absl::Status()>& base,
                                                  std::span<const std::function<absl::Status()>> kinds, int warmups,
                                                  int rounds, int steps, const std::function<double()>& clock) {
  if (rounds < 1 || steps < 1 || warmups < 0) {
    return absl::InvalidArgumentError("interleaved timing: rounds " + std::to_string(rounds) + ", steps " +
                                      std::to_string(steps) + ", warm-ups " + std::to_string(warmups));
  }
  for (int w = 0; w < warmups; ++w) {
    RETURN_IF_ERROR(base());
    for (const auto& kind : kinds) RETURN_IF_ERROR(kind());
  }
  std::vector<Block> base_blocks;
  std::vector<std::vector<Block>> kind_blocks(kinds.size());
  for (int r = 0; r < rounds; ++r) {
    ASSIGN_OR_RETURN(const Block b, TimeBlock(base, steps, clock));
    base_blocks.push_back(b);
    for (size_t k = 0; k < kinds.size(); ++k) {
      ASSIGN_OR_RETURN(const Block kb, TimeBlock(kinds[k], steps, clock));
      kind_blocks[k].push_back(kb);
    }
  }
  ASSIGN_OR_RETURN(const Block last, TimeBlock(base, steps, clock));
  base_blocks.push_back(last);

  InterleavedTiming t;
  std::vector<double> base_steps;
  for (const Block& b : base_blocks) base_steps.push_back(b.step);
  t.base_ms = Median(base_steps) * 1e3;
  for (const std::vector<Block>& blocks : kind_blocks) {
    std::vector<double> ms, ratios;
    for (int r = 0; r < rounds; ++r) {
      const Block &before = base_blocks[r], &after = base_blocks[r + 1], &kind = blocks[r];
      const double w = after.mid > before.mid ? (kind.mid - before.mid) / (after.mid - before.mid) : 0.5;
      const double base_there = before.step + w * (after.step - before.step);
      ms.push_back(kind.step * 1e3);
      ratios.push_back(kind.step / base_there);
    }
    t.ms.push_back(Median(ms));
    t.ratio.push_back(Median(ratios));
    t.ratio_min.push_back(*std::min_element(ratios.begin(), ratios.end()));
    t.ratio_max.push_back(*std::max_element(ratios.begin(), ratios.end()));
  }
  return t;
}

}  // namespace xlserve::bench
