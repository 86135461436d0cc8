// HostTime: the host work that a decode step's cycle carries beyond its pass, for one batch
// bucket: the median of the last kSamples measurements.
//
// Warm-up times passes alone (StepCosts). A step's cycle in a decoder also holds the work between
// two passes (the decoder's own, its caller's), which a plain step pays as much as a verify, so
// speculation prices both with it. A median, not a running mean: one stalled cycle (a preempted
// thread, a page fault) would otherwise move a price for many steps, and a price may end
// speculation for good.
#pragma once

#include <algorithm>
#include <array>

namespace xlserve {

class HostTime {
 public:
  static constexpr int kSamples = 15;

  // One cycle's seconds beyond its pass (negative where the pass ran faster than warm-up's).
  void Add(double seconds) {
    samples_[next_] = seconds;
    next_ = (next_ + 1) % kSamples;
    count_ = std::min(count_ + 1, kSamples);
    // Found here, once a step: a step prices several lengths with it.
    std::array<double, kSamples> sorted = samples_;
    const auto middle = sorted.begin() + (count_ - 1) / 2;
    std::nth_element(sorted.begin(), middle, sorted.begin() + count_);
    median_ = *middle;
  }
  // The median of the samples kept (the lower middle of an even count); 0 before any.
  double Median() const { return median_; }
  int count() const { return count_; }

 private:
  std::array<double, kSamples> samples_{};
  int count_ = 0;
  int next_ = 0;  // where the next sample goes, overwriting the oldest once full
  double median_ = 0;
};

}  // namespace xlserve
