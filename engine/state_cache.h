// StateCache: the fixed pool of recurrent-state slots, one per live sequence.
//
// The slots' memory lives in the backend (allocated once, at start); the cache hands slot
// ids out and takes them back. Acquire() gives a slot already reset to the empty state, so
// a new sequence never sees a previous owner's state. Not thread-safe: the engine thread
// owns it.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"

namespace xlserve {

class StateCache {
 public:
  // Allocates `num_slots` slots in `backend`, which must outlive the cache.
  static absl::StatusOr<StateCache> Create(Backend* backend, int num_slots);

  // A free, reset slot, or RESOURCE_EXHAUSTED when every slot is in use.
  absl::StatusOr<int> Acquire();
  // Gives `slot` back; FAILED_PRECONDITION if it is not currently acquired.
  absl::Status Release(int slot);

  int capacity() const { return static_cast<int>(in_use_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_in_use() const { return capacity() - num_free(); }
  bool in_use(int slot) const;

 private:
  explicit StateCache(Backend* backend, int num_slots);

  Backend* backend_;
  std::vector<int> free_;  // a stack: the most recently released slot is reused first
  std::vector<bool> in_use_;
};

}  // namespace xlserve
