// The host side of one CUDA forward pass (cuda_backend.cc): which rows each sequence owns and
// which of them are unembedded, the split of the batch by mLSTM kernel (deferred verify,
// one-token step, chunkwise prompt), the commits fused into it or applied before it, the shape of
// a step replayed as a CUDA graph, and every index array packed into one upload. Plain C++:
// tested on the CPU (batch_plan_test.cc).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.h"
#include "kernels/deferred_commits.h"

namespace xlserve::kernels {

// Some of the sequences of a batch, for a kernel launch over them alone (device pointers into
// the packed upload).
struct DeviceSubset {
  const int32_t* begin;  // [count]: rows [begin[i], end[i]) ...
  const int32_t* end;
  const int32_t* slots;  // ... in the state slot slots[i]
  int count;
  int max_tokens;
  const int32_t* pend_begin = nullptr;  // a fused commit's rows in the store (deferred subset)
  const int32_t* pend_end = nullptr;
  bool any_pending = false;
  const int32_t* keep_begin = nullptr;  // the store rows for a verify's own inputs (deferred subset)
  const int32_t* fresh = nullptr;  // [count]: 1 where the slot holds the zero state of ResetSlot
  bool all_fresh = false;          // every entry of fresh is 1
};

// Device index arrays of one batch (the trunk's, or the MTP heads' sub-batch).
struct Indices {
  const int32_t* row_begin;  // [num_seqs + 1]
  const int32_t* slots;      // [num_seqs]
  const int32_t* picked;     // rows to unembed
  const int32_t* defer;      // [num_seqs] defer_commit flags
  const int32_t* defer_src;  // rows of deferred sequences ...
  const int32_t* defer_dst;  // ... and where the store keeps their mLSTM inputs
  int num_defer_rows;
  float* store;
  float* verify_coef;  // [deferred count, heads, kVerifyCoefStride] when any sequence is deferred
  int num_seqs;
  // The sequences with defer_commit, and the others split by length: one token (the step
  // kernel) or more (chunkwise), so that decode rows beside a prompt chunk keep the step
  // kernel's cost instead of taking the chunkwise kernel's.
  DeviceSubset deferred, single, multi;
};

// Host side of a DeviceSubset.
struct Subset {
  std::vector<int32_t> begin, end, slots;
  std::vector<int32_t> pend_begin, pend_end;  // rows of a fused commit in the store (0 rows: none)
  std::vector<int32_t> keep_begin;             // the store rows for the sequence's own inputs
  std::vector<int32_t> fresh;
  int max_tokens = 0;
  bool any_pending = false;
  void Add(int first, int n, int slot, int32_t pend_row, int pend, int32_t keep_row, bool fresh_slot);
};

// Host side of Indices, built sequence by sequence.
struct IndexPlan {
  std::vector<int32_t> row_begin = {0}, slots, picked, defer, defer_src, defer_dst;
  std::vector<int> row_offset = {0};  // ForwardOutput::row_offset of these sequences
  Subset deferred, single, multi;

  int rows() const { return row_begin.back(); }
  void AddSequence(const SequenceInput& s, const DeferredPlacement& placement, bool fresh_slot);
  // Appends every array, in the order Resolve() reads them.
  void AppendTo(std::vector<int32_t>* packed) const;
  // The device view of what AppendTo wrote, copied to `at`.
  Indices Resolve(const int32_t* at, float* store) const;
};

// Everything the host decides about one Forward() before a kernel runs.
struct ForwardPlan {
  // A decode or verify step without logits (every sequence tokens_only, with the same tokens
  // count and flags; one token each unless verifying) replays a CUDA graph of its shape
  // (graph_key): the batch padded to a power of two with copies of its first sequence on the
  // scratch slot. Sampling runs after the graph, so it does not change the shape.
  bool graph_step = false;
  int graph_key = 0;
  std::vector<SequenceInput> seqs;  // what the kernels run: the batch, then any padding
  // Recorded commits that cannot ride along with their slot's verify, applied before the pass.
  CommitPlan commit_first;
  IndexPlan trunk, heads;
  // tokens [rows] | head rows [head_rows] | the trunk's arrays (at trunk_at) | the heads' (at heads_at)
  std::vector<int32_t> packed;
  size_t trunk_at = 0, heads_at = 0;
  int rows = 0;       // token rows of the trunk
  int head_rows = 0;  // rows of the trunk's output that the heads' sub-batch takes
  bool any_fused = false;

  bool any_deferred() const { return !trunk.defer_src.empty(); }
  int picked() const { return static_cast<int>(trunk.picked.size()); }
};

// Plans `batch` (validated) for the backend: `scratch_slot` takes the padding of graph steps
// (never when `profiling`, which needs the kernels' events); `tiled`: the tiled mLSTM kernels
// run (fused commits need them); `fresh_slots[slot]` is 1 where the slot still holds the zero
// state that ResetSlot left (shorter than a slot's index: 0). Updates `commits` as the pass
// will leave the slots.
ForwardPlan PlanForward(std::span<const SequenceInput> batch, int scratch_slot, bool tiled, bool profiling,
                        std::span<const uint8_t> fresh_slots, DeferredCommits* commits);

// Reorders per-head rows of `width` values from [head][sub-batch picked row] (host copies of the
// heads' outputs) to ForwardOutput's [picked row][head] over all of the batch's picked rows; rows
// of sequences without heads are zeros. Empty without heads.
template <typename T>
void ScatterHeadRows(std::span<const SequenceInput> batch, const IndexPlan& trunk, const IndexPlan& heads,
                     int num_heads, const T* src, size_t width, std::vector<T>* dst) {
  dst->clear();
  if (heads.slots.empty()) return;
  const size_t n = heads.picked.size();
  dst->assign(trunk.picked.size() * num_heads * width, T{});
  for (size_t i = 0, hs = 0; i < batch.size(); ++i) {
    if (!batch[i].mtp_heads) continue;
    for (int q = 0; q < trunk.row_offset[i + 1] - trunk.row_offset[i]; ++q) {
      for (int head = 1; head <= num_heads; ++head) {
        const T* from = src + ((head - 1) * n + heads.row_offset[hs] + q) * width;
        std::copy_n(from, width, dst->data() + (size_t(trunk.row_offset[i] + q) * num_heads + head - 1) * width);
      }
    }
    ++hs;
  }
}

}  // namespace xlserve::kernels
