#include "kernels/deferred_commits.h"

#include <string>

namespace xlserve::kernels {

absl::Status DeferredCommits::Record(std::span<const CommitInput> commits) {
  for (const CommitInput& c : commits) {
    if (c.num_tokens < 0 || c.num_tokens > slots_[c.slot].tokens) {
      return absl::FailedPreconditionError("commit: slot " + std::to_string(c.slot) + " has " +
                                           std::to_string(slots_[c.slot].tokens) + " deferred tokens, cannot commit " +
                                           std::to_string(c.num_tokens));
    }
  }
  // Recorded only; a deferred forward applied or fused any earlier commit of its slot, so none
  // is pending when tokens are.
  for (const CommitInput& c : commits) {
    SlotDeferral& d = slots_[c.slot];
    if (c.num_tokens > 0) {
      d.pending = c.num_tokens;
      d.pending_heads = d.heads;
      d.pending_half = d.half;
    }
    d.tokens = 0;
  }
  return absl::OkStatus();
}

bool DeferredCommits::Fuses(const SequenceInput& s, bool tiled) const {
  const SlotDeferral& d = slots_[s.slot];
  return d.pending > 0 && s.defer_commit && tiled && d.pending_heads == s.mtp_heads;
}

DeferredPlacement DeferredCommits::Place(const SequenceInput& s, bool fused) {
  SlotDeferral& d = slots_[s.slot];
  const int half = 1 - d.half;  // never the half a fused commit reads
  const DeferredPlacement placement{layout_.Row(s.slot, half, 0), layout_.Row(s.slot, d.pending_half, 0),
                                    fused ? d.pending : 0};
  d = s.defer_commit ? SlotDeferral{static_cast<int>(s.tokens.size()), s.mtp_heads, half} : SlotDeferral{};
  return placement;
}

CommitPlan DeferredCommits::TakePending(std::span<const int> slots) {
  std::vector<int> order;
  for (bool with_heads : {true, false}) {
    for (int slot : slots) {
      if (slots_[slot].pending > 0 && slots_[slot].pending_heads == with_heads) order.push_back(slot);
    }
  }
  CommitPlan plan;
  plan.count = static_cast<int>(order.size());
  for (int slot : order) {
    plan.with_heads += slots_[slot].pending_heads ? 1 : 0;
    plan.packed.push_back(layout_.Row(slot, slots_[slot].pending_half, 0));
  }
  for (int slot : order) plan.packed.push_back(layout_.Row(slot, slots_[slot].pending_half, slots_[slot].pending));
  for (int slot : order) plan.packed.push_back(slot);
  for (int slot : order) slots_[slot].pending = 0;
  return plan;
}

}  // namespace xlserve::kernels
