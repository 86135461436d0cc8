// TimeInterleaved: the cost of steps of several kinds relative to a base step, timed in
// alternating blocks (base, kind 1, ..., kind n, base, ...), so that a drift in the device's
// speed while they run (clocks, temperature, another process) moves both sides of each ratio
// alike. Timed one after the other, seconds apart, a verify of the 7B shape at batch 4 cost
// 1.06-1.16x a plain step over five runs of one binary (H100).
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace xlserve::bench {

struct InterleavedTiming {
  double base_ms = 0;  // median over the base blocks of their mean step
  // Per kind, over rounds: the median of the block's mean step, and the median, least and
  // largest of its ratio to the base, read at the block's midpoint on the line between the base
  // blocks before and after it.
  std::vector<double> ms, ratio, ratio_min, ratio_max;
};

// Runs each step untimed `warmups` times, then `rounds` rounds of `steps` calls of the base and
// then of each kind, then a last base block. `clock` gives seconds.
absl::StatusOr<InterleavedTiming> TimeInterleaved(const std::function<absl::Status()>& base,
                                                  std::span<const std::function<absl::Status()>> kinds, int warmups,
                                                  int rounds, int steps, const std::function<double()>& clock);

}  // namespace xlserve::bench
