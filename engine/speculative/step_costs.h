// StepCosts: measured time of a decode step by batch bucket — plain (one token a sequence, no
// heads) and verify of L tokens a sequence (heads and a fused commit) — as warm-up replays them
// (engine/warm_up.h). Speculation weighs the tokens a draft length is expected to yield against
// these, per step and for the whole batch (BatchDecoder).
#pragma once

#include <map>
#include <optional>
#include <utility>

namespace xlserve {

struct StepCosts {
  std::map<int, double> plain;                  // bucket -> seconds
  std::map<std::pair<int, int>, double> verify;  // (bucket, tokens per sequence) -> seconds

  bool empty() const { return plain.empty(); }
  // The bucket holding `batch`: the smallest measured one at least that large; nullopt when
  // none was measured that large.
  std::optional<int> Bucket(int batch) const {
    auto it = plain.lower_bound(batch);
    if (it == plain.end()) return std::nullopt;
    return it->first;
  }
  // The cost for `batch` sequences: its bucket's; nullopt when none was measured that large.
  std::optional<double> Plain(int batch) const {
    auto it = plain.lower_bound(batch);
    if (it == plain.end()) return std::nullopt;
    return it->second;
  }
  std::optional<double> Verify(int batch, int tokens) const {
    for (auto it = verify.lower_bound({batch, 0}); it != verify.end(); ++it) {
      if (it->first.second == tokens) return it->second;
    }
    return std::nullopt;
  }
};

}  // namespace xlserve
