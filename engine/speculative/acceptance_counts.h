// AcceptanceCounts: how many verify passes of k drafts kept 0..k of them, per draft length k.
// A sequence's GenerationResult carries its own; an acceptance trace (acceptance_trace.h) is
// their sum over a measured run.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace xlserve {

struct AcceptanceCounts {
  // k -> counts of k + 1 entries, indexed by the number of drafts kept.
  std::map<int, std::vector<int64_t>> by_draft_length;

  void Record(int drafts, int kept) {
    std::vector<int64_t>& counts = by_draft_length[drafts];
    counts.resize(drafts + 1);
    ++counts[kept];
  }
  void Add(const AcceptanceCounts& other) {
    for (const auto& [drafts, counts] : other.by_draft_length) {
      std::vector<int64_t>& mine = by_draft_length[drafts];
      mine.resize(drafts + 1);
      for (int kept = 0; kept <= drafts; ++kept) mine[kept] += counts[kept];
    }
  }
  bool operator==(const AcceptanceCounts&) const = default;
};

}  // namespace xlserve
