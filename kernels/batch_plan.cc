#include "kernels/batch_plan.h"

#include <algorithm>
#include <bit>

#include "engine/step_shape.h"

namespace xlserve::kernels {

void Subset::Add(int first, int n, int slot, int32_t pend_row, int pend, int32_t keep_row, bool fresh_slot) {
  begin.push_back(first);
  end.push_back(first + n);
  slots.push_back(slot);
  pend_begin.push_back(pend_row);
  pend_end.push_back(pend_row + pend);
  keep_begin.push_back(keep_row);
  fresh.push_back(fresh_slot ? 1 : 0);
  max_tokens = std::max(max_tokens, n);
  any_pending = any_pending || pend > 0;
}

void IndexPlan::AddSequence(const SequenceInput& s, const DeferredPlacement& placement, bool fresh_slot) {
  const int first = rows(), n = static_cast<int>(s.tokens.size());
  for (int r = s.all_logits ? first : first + n - 1; r < first + n; ++r) picked.push_back(r);
  row_offset.push_back(static_cast<int>(picked.size()));
  row_begin.push_back(first + n);
  slots.push_back(s.slot);
  defer.push_back(s.defer_commit ? 1 : 0);
  Subset& subset = s.defer_commit ? deferred : n == 1 ? single : multi;
  subset.Add(first, n, s.slot, placement.pend_row, s.defer_commit ? placement.pend : 0,
             s.defer_commit ? placement.store_row : 0, fresh_slot);
  for (int t = 0; s.defer_commit && t < n; ++t) {
    defer_src.push_back(first + t);
    defer_dst.push_back(placement.store_row + t);
  }
}

void IndexPlan::AppendTo(std::vector<int32_t>* packed) const {
  for (const auto* v : {&row_begin, &slots, &picked, &defer, &defer_src, &defer_dst}) {
    packed->insert(packed->end(), v->begin(), v->end());
  }
  for (const Subset* s : {&deferred, &single, &multi}) {
    for (const auto* v : {&s->begin, &s->end, &s->slots, &s->pend_begin, &s->pend_end, &s->fresh, &s->keep_begin}) {
      packed->insert(packed->end(), v->begin(), v->end());
    }
  }
}

Indices IndexPlan::Resolve(const int32_t* at, float* store) const {
  Indices idx;
  idx.row_begin = at;
  idx.slots = idx.row_begin + row_begin.size();
  idx.picked = idx.slots + slots.size();
  idx.defer = idx.picked + picked.size();
  idx.defer_src = idx.defer + defer.size();
  idx.defer_dst = idx.defer_src + defer_src.size();
  idx.num_defer_rows = static_cast<int>(defer_src.size());
  idx.store = store;
  idx.verify_coef = nullptr;
  idx.num_seqs = static_cast<int>(slots.size());
  const int32_t* next = idx.defer_dst + defer_dst.size();
  for (auto [host, dev] :
       {std::pair{&deferred, &idx.deferred}, std::pair{&single, &idx.single}, std::pair{&multi, &idx.multi}}) {
    const int n = static_cast<int>(host->slots.size());
    const bool all_fresh = std::all_of(host->fresh.begin(), host->fresh.end(), [](int32_t f) { return f != 0; });
    *dev = DeviceSubset{next,         next + n,          next + 2 * n, n, host->max_tokens, next + 3 * n,
                        next + 4 * n, host->any_pending, next + 6 * n, next + 5 * n, all_fresh};
    next += 7 * n;
  }
  return idx;
}

ForwardPlan PlanForward(std::span<const SequenceInput> batch, int scratch_slot, bool tiled, bool profiling,
                        std::span<const uint8_t> fresh_slots, DeferredCommits* commits) {
  ForwardPlan plan;
  plan.seqs.assign(batch.begin(), batch.end());
  plan.graph_step = !profiling && UniformDecodeStep(batch) && batch.front().tokens_only;
  const SequenceInput& first = batch.front();
  const int len = static_cast<int>(first.tokens.size());
  int bucket = 0;
  if (plan.graph_step) {
    bucket = static_cast<int>(std::bit_ceil(batch.size()));
    SequenceInput pad = first;
    pad.slot = scratch_slot;  // the first sequence's tokens, on a slot whose state nobody reads
    pad.sample = nullptr;
    plan.seqs.resize(bucket, pad);
  }

  // A recorded commit rides along with the slot's next verify when the tiled kernels run it and
  // the same layers run (heads or not); otherwise it is applied first.
  std::vector<bool> fused(plan.seqs.size());
  std::vector<int> apply_first;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    fused[i] = commits->Fuses(plan.seqs[i], tiled);
    if (commits->slot(plan.seqs[i].slot).pending > 0 && !fused[i]) apply_first.push_back(plan.seqs[i].slot);
  }
  plan.commit_first = commits->TakePending(apply_first);

  std::vector<int32_t> head_rows;  // rows of the trunk's output that the heads' sub-batch takes
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const SequenceInput& s = plan.seqs[i];
    const int row = static_cast<int>(plan.packed.size());
    plan.packed.insert(plan.packed.end(), s.tokens.begin(), s.tokens.end());
    const DeferredPlacement placement = commits->Place(s, fused[i]);
    plan.any_fused = plan.any_fused || placement.pend > 0;
    const bool fresh = static_cast<size_t>(s.slot) < fresh_slots.size() && fresh_slots[s.slot] != 0;
    plan.trunk.AddSequence(s, placement, fresh);
    if (s.mtp_heads) {
      for (int t = 0; t < static_cast<int>(s.tokens.size()); ++t) head_rows.push_back(row + t);
      plan.heads.AddSequence(s, placement, fresh);
    }
  }
  plan.rows = static_cast<int>(plan.packed.size());
  plan.head_rows = static_cast<int>(head_rows.size());
  plan.packed.insert(plan.packed.end(), head_rows.begin(), head_rows.end());
  plan.trunk_at = plan.packed.size();
  plan.trunk.AppendTo(&plan.packed);
  plan.heads_at = plan.packed.size();
  plan.heads.AppendTo(&plan.packed);

  if (plan.graph_step) {
    // Everything that changes the launches: sizes, flags, whether a commit is fused.
    int key = bucket * (commits->layout().max_tokens + 1) + len;
    for (bool bit : {first.all_logits, first.mtp_heads, first.defer_commit, plan.any_fused}) {
      key = key * 2 + (bit ? 1 : 0);
    }
    plan.graph_key = key;
  }
  return plan;
}

}  // namespace xlserve::kernels
