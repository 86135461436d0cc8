#include "engine/state_cache.h"

#include <string>

#include "base/status_macros.h"

namespace xlserve {

absl::StatusOr<StateCache> StateCache::Create(Backend* backend, int num_slots) {
  if (num_slots <= 0) {
    return absl::InvalidArgumentError("state cache needs at least one slot, got " +
                                      std::to_string(num_slots));
  }
  RETURN_IF_ERROR(backend->AllocateSlots(num_slots));
  return StateCache(backend, num_slots);
}

StateCache::StateCache(Backend* backend, int num_slots)
    : backend_(backend), in_use_(num_slots, false) {
  free_.reserve(num_slots);
  for (int s = num_slots - 1; s >= 0; --s) free_.push_back(s);
}

absl::StatusOr<int> StateCache::Acquire() {
  if (free_.empty()) {
    return absl::ResourceExhaustedError("all " + std::to_string(capacity()) +
                                        " state slots are in use");
  }
  const int slot = free_.back();
  RETURN_IF_ERROR(backend_->ResetSlot(slot));
  free_.pop_back();
  in_use_[slot] = true;
  return slot;
}

absl::Status StateCache::Release(int slot) {
  if (!in_use(slot)) {
    return absl::FailedPreconditionError("state slot " + std::to_string(slot) +
                                         " is not in use");
  }
  in_use_[slot] = false;
  free_.push_back(slot);
  return absl::OkStatus();
}

bool StateCache::in_use(int slot) const {
  return slot >= 0 && slot < capacity() && in_use_[slot];
}

}  // namespace xlserve
