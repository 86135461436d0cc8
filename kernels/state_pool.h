// The pool of recurrent-state slots on the GPU, in fp32 or bf16.
//
// Device layout (differs from StateLayout's host format, which ReadSlot/WriteSlot convert
// to): per slot, per layer, per head, C [dqk, dv] row-major then n [dqk], padded to a multiple
// of 8 elements so that every C starts 16-byte aligned for vector loads; m, the fp32
// stabiliser, in a separate array [slot, layer, head] whatever the state type.
// Ownership: StatePool owns its device memory; it is move-only. Calls are stream-ordered on
// the stream given to them.
#pragma once

#include <cuda_runtime_api.h>

#include <span>

#include "absl/status/status.h"
#include "engine/state_layout.h"
#include "kernels/launchers.h"

namespace xlserve::kernels {

class StatePool {
 public:
  StatePool(const StateLayout& layout, StateType type);
  ~StatePool();
  StatePool(const StatePool&) = delete;
  StatePool& operator=(const StatePool&) = delete;

  // Replaces the pool by `num_slots` zeroed slots; RESOURCE_EXHAUSTED when the GPU lacks the memory.
  absl::Status Allocate(int num_slots);
  int num_slots() const { return num_slots_; }
  StateType type() const { return type_; }
  // Bytes one slot occupies on the GPU (C, n and m).
  int64_t slot_bytes() const;

  absl::Status Reset(int slot, cudaStream_t stream);
  // Host copies in StateLayout's fp32 format; `out`/`in` hold layout.slot_floats() values.
  // Both synchronise `stream`.
  absl::Status Read(int slot, std::span<float> out, cudaStream_t stream) const;
  absl::Status Write(int slot, std::span<const float> in, cudaStream_t stream);

  // A slot's two regions, for whole-state copies (snapshots): C and n of every layer and head
  // (state_bytes()), then m (m_bytes()).
  void* state_of(int slot) const { return static_cast<char*>(pool_) + slot * state_bytes(); }
  float* m_of(int slot) const { return m_ + slot * m_per_slot(); }
  int64_t state_bytes() const { return slot_elems() * static_cast<int64_t>(elem_bytes()); }
  int64_t m_bytes() const { return m_per_slot() * static_cast<int64_t>(sizeof(float)); }

  // Where layer `layer`'s heads live, for the mLSTM kernels.
  MlstmStateRef Ref(int layer) const;

 private:
  int64_t head_elems() const;
  int64_t slot_elems() const { return head_elems() * layout_.num_heads * layout_.num_layers; }
  int64_t m_per_slot() const { return int64_t(layout_.num_heads) * layout_.num_layers; }
  size_t elem_bytes() const { return type_ == StateType::kF32 ? 4 : 2; }
  void Free();

  StateLayout layout_;
  StateType type_;
  void* pool_ = nullptr;
  float* m_ = nullptr;
  int num_slots_ = 0;
};

}  // namespace xlserve::kernels
