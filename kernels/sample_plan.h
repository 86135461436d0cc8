// The host side of SampleRows (launchers.h): one SampleRowSpec per sequence sampled on the GPU
// and the penalty entries of its history, in O(history) per sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend.h"
#include "kernels/launchers.h"

namespace xlserve::kernels {

class SamplePlan {
 public:
  // Empties the plan for rows of `vocab` logits.
  void Reset(int vocab);
  // Adds a row that samples `s` from logits row `logits_row`. The history ids must lie in
  // [0, vocab) (ValidateForwardBatch checks them); the entries exist only when a penalty is on.
  void Add(const DeviceSampling& s, int32_t logits_row);

  const std::vector<SampleRowSpec>& rows() const { return rows_; }
  const std::vector<PenaltyEntry>& penalties() const { return penalties_; }

 private:
  // The entry of `token` in this row's penalty list, appended when new.
  PenaltyEntry& EntryOf(int32_t token);

  std::vector<SampleRowSpec> rows_;
  std::vector<PenaltyEntry> penalties_;
  // By token id: its index in penalties_ while Add() lists a row, else -1. Kept across calls
  // so that a row costs O(history), not O(vocab).
  std::vector<int32_t> entry_of_;
};

}  // namespace xlserve::kernels
