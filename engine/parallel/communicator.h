// Communicator: the collective operations tensor-parallel ranks run together (docs/design.md §10).
//
// Every rank of a group calls the same collectives in the same order. AllReduceSum adds in a
// fixed order, PairwiseSum's over the ranks, so every rank ends with the same bits and a
// product split over ranks adds up exactly as it does whole (tensor_parallel_plan.h).
#pragma once

#include <span>

namespace xlserve {

// Sums values[0..n) in a pairwise tree over adjacent pairs: ((v0 + v1) + (v2 + v3)) + ...; n a
// power of two. Overwrites `values`; returns the sum.
inline float PairwiseSum(std::span<float> values) {
  for (size_t width = 1; width < values.size(); width *= 2) {
    for (size_t i = 0; i + width < values.size(); i += 2 * width) values[i] += values[i + width];
  }
  return values.empty() ? 0.0f : values[0];
}

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Element-wise sum of every rank's `data` (same length on each), in place on every rank.
  virtual void AllReduceSum(std::span<float> data) = 0;
};

// One rank alone: collectives leave the data as it is.
class SingleRank final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void AllReduceSum(std::span<float>) override {}
};

}  // namespace xlserve
