// SnapshotPool: buffers that hold copies of state slots (snapshots) in GPU memory and in pinned
// host memory, and the copies between them and the slots.
//
// A snapshot is a slot's two regions back to back (StatePool): C and n in the pool's dtype and
// padded layout, then m. So a bf16 state stays bf16, and a copy is two memcpys, not a
// conversion. Every copy is asynchronous. Copies into or out of a slot run on the stream of
// the forward pass, so they fall in order with the steps that use the slot; tier moves run on
// a stream of their own so that a spill to host overlaps the next steps. Each buffer keeps an
// event recorded after its last copy, and a copy that touches the buffer first makes its stream
// wait for that event: no copy overtakes another on the same buffer, and the host never waits.
// Ownership: the pool owns its memory, events and copy stream; `slots` must outlive it.
#pragma once

#include <cuda_runtime_api.h>

#include <vector>

#include "absl/status/status.h"
#include "engine/backend.h"
#include "kernels/state_pool.h"

namespace xlserve::kernels {

class SnapshotPool {
 public:
  explicit SnapshotPool(const StatePool* slots) : slots_(slots) {}
  ~SnapshotPool();
  SnapshotPool(const SnapshotPool&) = delete;
  SnapshotPool& operator=(const SnapshotPool&) = delete;

  // Bytes of one snapshot.
  int64_t bytes() const { return slots_->state_bytes() + slots_->m_bytes(); }
  // Replaces every buffer by `device` GPU buffers and `host` pinned host buffers.
  absl::Status Allocate(int device, int host);

  // slot -> dst and src -> slot on `stream` (the forward pass's).
  absl::Status Save(int slot, SnapshotRef dst, cudaStream_t stream);
  absl::Status Restore(SnapshotRef src, int slot, cudaStream_t stream);
  // src -> dst on the pool's own copy stream.
  absl::Status Copy(SnapshotRef src, SnapshotRef dst);

 private:
  struct Buffer {
    char* data = nullptr;
    cudaEvent_t last = nullptr;  // recorded after the buffer's latest copy
  };
  absl::StatusOr<Buffer*> Find(SnapshotRef ref);
  // Copies `bytes()` from the slot or buffer regions `src_*` to `dst_*` on `stream`, after the
  // buffers' earlier copies, and records their events.
  absl::Status Run(char* dst_state, char* dst_m, const char* src_state, const char* src_m, Buffer* a, Buffer* b,
                   cudaStream_t stream);
  void Free();

  const StatePool* slots_;
  cudaStream_t copy_stream_ = nullptr;
  std::vector<Buffer> tiers_[2];  // by SnapshotTier
  std::vector<void*> device_chunks_, host_chunks_;
};

}  // namespace xlserve::kernels
