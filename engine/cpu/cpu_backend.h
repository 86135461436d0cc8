// CpuBackend: the readable, exact reference implementation of the xLSTM forward pass.
//
// fp32 maths throughout (weights widened from F32/BF16/F16 as they are read), multithreaded
// over output features and over (sequence, head) pairs. It defines the numbers every other
// backend must reproduce, and is the backend CI runs.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_weights.h"
#include "engine/util/thread_pool.h"

namespace xlserve {

struct CpuBackendOptions {
  int num_threads = 0;  // 0: one per hardware thread
  // Tokens per chunk of the chunkwise mLSTM during prefill. Any value >= 1 gives the same
  // result up to rounding; 1 turns prefill into plain recurrent steps.
  int chunk_size = 64;
};

class CpuBackend final : public Backend {
 public:
  // `weights` is shared and must stay immutable; the backend keeps a reference to it.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(
      std::shared_ptr<const ModelWeights> weights, const CpuBackendOptions& options);

  std::string_view name() const override { return "cpu"; }
  const StateLayout& state_layout() const override { return layout_; }
  absl::Status AllocateSlots(int num_slots) override;
  int num_slots() const override { return num_slots_; }
  absl::Status ResetSlot(int slot) override;
  absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) override;
  absl::Status ReadSlot(int slot, std::span<float> out) const override;
  absl::Status WriteSlot(int slot, std::span<const float> in) override;

 private:
  CpuBackend(std::shared_ptr<const ModelWeights> weights, const CpuBackendOptions& options);

  absl::Status ValidateBatch(std::span<const SequenceInput> batch) const;
  // Runs one block over all rows of x ([rows, d]); sequence i owns rows
  // [row_begin[i], row_begin[i+1]) and the state of slot batch[i].slot at `layer`.
  void RunBlock(const BlockWeights& w, int layer, std::span<const SequenceInput> batch,
                const std::vector<int64_t>& row_begin, std::vector<float>& x);
  float* SlotData(int slot) { return states_.data() + slot * layout_.slot_floats(); }

  std::shared_ptr<const ModelWeights> weights_;
  CpuBackendOptions options_;
  StateLayout layout_;
  ThreadPool pool_;
  int num_slots_ = 0;
  std::vector<float> states_;
};

}  // namespace xlserve
