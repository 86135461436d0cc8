// Backend: the one interface through which the engine runs the model on a device.
//
// A backend instance is created for one loaded model (it keeps a shared reference to the
// immutable ModelWeights) and owns everything that belongs to a running engine: the pool of
// recurrent-state slots, scratch buffers, threads or streams. Calls come from one engine
// thread; a backend is not safe for concurrent use.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/state_layout.h"

namespace xlserve {

// The work of one sequence in a forward pass: run `tokens` from the state held in `slot`,
// advancing that state past the last token.
struct SequenceInput {
  int slot = -1;
  std::span<const int32_t> tokens;  // at least one token; ids < vocab_size
  bool all_logits = false;          // logits for every position, not only the last
};

// Logits of a forward pass, fp32, row-major [rows, vocab]. Sequence i owns rows
// [row_offset[i], row_offset[i + 1]): one row, or one per token with all_logits.
struct ForwardOutput {
  int vocab_size = 0;
  std::vector<float> logits;
  std::vector<int> row_offset;

  std::span<const float> Row(int r) const {
    return {logits.data() + static_cast<size_t>(r) * vocab_size, static_cast<size_t>(vocab_size)};
  }
  // The logits after the last token of sequence `i`.
  std::span<const float> LastRow(int i) const { return Row(row_offset[i + 1] - 1); }
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;
  virtual const StateLayout& state_layout() const = 0;

  // Allocates `num_slots` zeroed state slots, replacing any earlier pool.
  virtual absl::Status AllocateSlots(int num_slots) = 0;
  virtual int num_slots() const = 0;

  // Returns the slot to the empty state (the state before any token).
  virtual absl::Status ResetSlot(int slot) = 0;

  // Runs each sequence's tokens from its slot's state and advances the state. Sequences
  // must name distinct slots. `out` is resized and overwritten.
  virtual absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) = 0;

  // Host copies of a slot's state in StateLayout's fp32 format: snapshots, swapping, tests.
  virtual absl::Status ReadSlot(int slot, std::span<float> out) const = 0;
  virtual absl::Status WriteSlot(int slot, std::span<const float> in) = 0;
};

}  // namespace xlserve
