// PeerFigures: another implementation's figures for the shapes `xlserve bench --shape 7b`
// measures, from the JSON that bench/nxai_peer.py writes in the same session on the same GPU, so
// that the bench's tables show the two side by side (--peer FILE).
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace xlserve::bench {

struct PeerFigures {
  std::string impl;                // what was measured, as the file names it
  std::map<int, double> step_ms;   // greedy decode step by batch size (bf16 state)
  std::map<int, double> ttft_ms;   // time to first token at batch 1 by prompt tokens
};

// INVALID_ARGUMENT, naming the file and what is wrong, for a file that is not such JSON, was
// measured on another shape (nxai_peer.py --tiny) or state dtype, or has no decode row;
// NOT_FOUND when it cannot be read.
absl::StatusOr<PeerFigures> ReadPeerFigures(const std::string& path);

}  // namespace xlserve::bench
