// Decode and prefill speed of an accelerator backend (the CUDA one) on a model shape made in memory with random
// weights (no checkpoint file), each figure beside its physical limit and DESIGN §8's
// reference.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/peer_figures.h"
#include "engine/accelerator.h"
#include "engine/model/model_weights.h"
#include "engine/util/dtype.h"
#include "nlohmann/json.hpp"

namespace xlserve::bench {

// xLSTM-7b's config (DESIGN §2).
ModelConfig Xlstm7bConfig();

// Every tensor of `config` as random bf16 values in host memory (multithreaded fill).
std::shared_ptr<const ModelWeights> RandomBf16Weights(const ModelConfig& config, uint32_t seed);

struct ShapeBenchOptions {
  std::vector<int> batch_sizes = {1, 8, 32, 64, 128};
  std::vector<int> prompt_lengths = {128, 512, 2048};
  std::vector<DType> state_dtypes = {DType::kBF16, DType::kF32};
  // Every table is made for each precision in turn.
  std::vector<Precision> precisions = {Precision::kBf16, Precision::kExact};
  int steps = 20;              // timed decode steps per batch size
  double copy_bandwidth = 0;   // bytes/s (read + write), measured by the caller on the same device
  double tensor_core_flops = 0;  // bf16 GEMM FLOP/s, measured by the caller on the same device
  // Speculative verify lengths L (1 + drafts) whose cost relative to a plain step is measured
  // at every batch size with the first state dtype; empty: none.
  std::vector<int> verify_lengths;
  // Run a server's start-up warm-up (engine/warm_up.h) on each backend before measuring, for the
  // largest batch and a step budget of warm_up_step_tokens rows (the server's default), so that
  // whole passes settle the GEMM choices timing leaves open and the steps replay graphs, as
  // they do in a server. Without it, each shape's first call times its GEMM candidates alone.
  bool warm_up = false;
  int warm_up_step_tokens = 512;
  // Another implementation's figures from the same session (bench/nxai_peer.py): its decode
  // steps and TTFTs beside the bf16-state rows, in place of DESIGN §8's stored reference.
  std::optional<PeerFigures> peer;
};

// Runs the measurements for each precision; returns one JSON object per row (with its
// "precision") and appends the tables to `table`.
// Decode rows: Forward() wall time per greedy step (tokens_only: the tokens reach the host,
// not the logits), the HBM
// floor ((matrix bytes + 2 x state bytes x batch) / copy bandwidth), the fraction reached, the
// peer's step (ShapeBenchOptions::peer) or else the stored reference, and the largest stage of
// one profiled step with its share.
// Prefill rows (first state dtype, batch 1): time to first token (median of 5) and the fraction of the tensor-core
// roofline (2 x matrix parameters x tokens FLOPs at the measured GEMM rate).
// Verify rows: a deferred greedy verify pass of L tokens per sequence (every row's argmax to
// the host) plus the commit of all L, against a plain one-token step of the same batch, the two
// timed in blocks taking turns (bench/interleaved_timing.h).
// Backends come from `device`, which also profiles their stages.
absl::StatusOr<nlohmann::json> RunShapeBench(const Accelerator& device, std::shared_ptr<const ModelWeights> weights,
                                             const ShapeBenchOptions& options, std::string* table);

}  // namespace xlserve::bench
