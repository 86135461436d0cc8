// Decode and prefill speed of a backend on a model shape made in memory with random weights
// (no checkpoint file), each figure beside its physical limit.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"
#include "nlohmann/json.hpp"

namespace xlserve::bench {

// xLSTM-7b's config (DESIGN §2).
ModelConfig Xlstm7bConfig();

// Every tensor of `config` as random bf16 values in host memory (multithreaded fill).
std::shared_ptr<const ModelWeights> RandomBf16Weights(const ModelConfig& config, uint32_t seed);

struct ShapeBenchOptions {
  std::vector<int> batch_sizes = {1, 8, 32, 64, 128};
  std::vector<int> prompt_lengths = {128, 512, 2048};
  int steps = 10;
  double copy_bandwidth = 0;  // bytes/s, measured by the caller on the same device
  double peak_flops = 989e12;  // dense bf16 tensor-core peak (H100 SXM)
};

// Runs the measurements on a CUDA backend over `weights`; returns rows of JSON and fills `table`.
absl::StatusOr<nlohmann::json> RunShapeBench(std::shared_ptr<const ModelWeights> weights,
                                             const ShapeBenchOptions& options, std::string* table);

}  // namespace xlserve::bench
