// Which timed candidates of a GEMM shape stay open for warm-up's passes to decide (LtGemm).
#pragma once

#include <cstddef>
#include <vector>

namespace xlserve::kernels {

// The candidates that stay open, as indices into `ms` (counted times, fastest first), timing's
// pick first: those within `gap` of the fastest, at most `max_open`; and where none of those is
// a StreamGemm (`stream`), the fastest StreamGemm within `stream_gap`, one past `max_open`.
// Why the second: timed alone, StreamGemm cannot show what programmatic dependent launch gives
// it in a pass, its weight stream starting while the kernel ahead ends. On an H100 (7B shape,
// out_proj over 64 rows) it counted 5-8% slower than cuBLASLt's best, outside the open gap, yet
// in warm-up's passes it was the faster by 0.1 ms a pass (6.19-6.23 against 6.29-6.34 ms), and
// the decode step at batch 64 took 8.58-8.67 ms with it against 8.83-8.88 without.
inline std::vector<size_t> OpenCandidates(const std::vector<float>& ms, const std::vector<bool>& stream, float gap,
                                          float stream_gap, size_t max_open) {
  std::vector<size_t> open;
  if (ms.empty()) return open;
  open.push_back(0);
  while (open.size() < ms.size() && open.size() < max_open && ms[open.size()] <= ms[0] * (1 + gap)) {
    open.push_back(open.size());
  }
  bool has_stream = false;
  for (size_t i : open) has_stream = has_stream || stream[i];
  for (size_t i = open.size(); !has_stream && i < ms.size() && ms[i] <= ms[0] * (1 + stream_gap); ++i) {
    if (stream[i]) {
      open.push_back(i);
      has_stream = true;
    }
  }
  return open;
}

}  // namespace xlserve::kernels
