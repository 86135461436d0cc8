// The host bookkeeping of speculative verify on the GPU (docs/design.md §4). A deferred forward
// leaves its slots' states unwritten and keeps each layer's k, v, ĩ, f̃ rows in one of two halves
// of a per-slot store; Commit() only records how many of them to apply. The slot's next verify
// applies them inside its own pass over the state (the fused commit: one read and one write of C
// per speculative step); anything else that needs the state (a plain step, ReadSlot, a snapshot)
// has the commit kernel apply them first (TakePending). Plain C++: tested on the CPU
// (deferred_commits_test.cc); the kernels that use it are in forward_pass.cc.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend.h"

namespace xlserve::kernels {

// The store of deferred mLSTM inputs: [slot][half][layer][max_tokens][k | v | ĩ | f̃]. Two halves,
// so that a verify writes its inputs while the previous verify's are applied from the other.
struct DeferredStoreLayout {
  int num_layers = 0;
  int max_tokens = 0;  // per sequence and deferred forward (1 + the most drafts)
  int qk_dim = 0;      // heads * dqk
  int v_dim = 0;       // heads * dv
  int heads = 0;

  int width() const { return qk_dim + v_dim + 2 * heads; }
  int k_column() const { return 0; }
  int v_column() const { return qk_dim; }
  int igate_column() const { return qk_dim + v_dim; }
  int fgate_column() const { return qk_dim + v_dim + heads; }
  // Row of token t of `slot` in layer 0's view of the store; layer l's view starts
  // LayerOffset(l) floats later.
  int32_t Row(int slot, int half, int t) const { return ((slot * 2 + half) * num_layers) * max_tokens + t; }
  int64_t LayerOffset(int layer) const { return int64_t(layer) * max_tokens * width(); }
  size_t Floats(int num_slots) const { return size_t(num_slots) * 2 * num_layers * max_tokens * width(); }
};

// What a slot's deferred forwards left: the inputs of the last one (for Commit()), and a commit
// recorded but not yet applied to the state.
struct SlotDeferral {
  int tokens = 0;
  bool heads = false;  // the head layers ran too
  int half = 0;        // the store half holding its inputs
  int pending = 0;     // committed tokens not yet in the state (from half pending_half)
  bool pending_heads = false;
  int pending_half = 0;
};

// The commit kernel's work over some slots: those whose heads ran first (the head layers
// commit only those), packed as [row begin in the store ...][row end ...][slot ...].
struct CommitPlan {
  std::vector<int32_t> packed;
  int count = 0;
  int with_heads = 0;
  bool empty() const { return count == 0; }
};

// Where a sequence of a forward pass keeps its deferred inputs, and the rows of its slot's
// recorded commit that the pass applies on the way (pend = 0: none).
struct DeferredPlacement {
  int32_t store_row = 0;
  int32_t pend_row = 0;
  int pend = 0;
};

class DeferredCommits {
 public:
  explicit DeferredCommits(const DeferredStoreLayout& layout) : layout_(layout) {}

  const DeferredStoreLayout& layout() const { return layout_; }
  // `num_slots` slots with nothing deferred.
  void Resize(int num_slots) { slots_.assign(num_slots, SlotDeferral{}); }
  // The slot's state was overwritten: what was deferred or recorded no longer applies.
  void Clear(int slot) { slots_[slot] = SlotDeferral{}; }
  const SlotDeferral& slot(int slot) const { return slots_[slot]; }

  // Commit(): records how many of each slot's deferred tokens enter its state. The slots must
  // exist; FAILED_PRECONDITION when a count exceeds what the slot's last forward deferred.
  absl::Status Record(std::span<const CommitInput> commits);

  // Whether the commit recorded for `s.slot` rides along with this forward of `s`: a verify
  // (defer_commit) through the tiled kernels (`tiled`) over the same layers (heads or not).
  bool Fuses(const SequenceInput& s, bool tiled) const;
  // A forward runs `s` (fused: as Fuses() said): its inputs go to the half the fused commit
  // does not read, and the slot now holds what `s` defers (nothing unless defer_commit).
  DeferredPlacement Place(const SequenceInput& s, bool fused);
  // The recorded commits of `slots` for the commit kernel, no longer pending. Slots with
  // nothing pending are left out.
  CommitPlan TakePending(std::span<const int> slots);

 private:
  DeferredStoreLayout layout_;
  std::vector<SlotDeferral> slots_;
};

}  // namespace xlserve::kernels
