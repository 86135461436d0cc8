// The tensors a checkpoint must hold for a given ModelConfig: names (DESIGN §2), shapes and
// what each dimension is. The loader checks checkpoints against this list and the test writer
// builds checkpoints from it, so the two cannot drift apart.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/model_config.h"

namespace xlserve {

struct ExpectedTensor {
  std::string name;            // e.g. "backbone.blocks.3.mlstm_layer.q.weight"
  std::vector<int64_t> shape;  // e.g. {qk_dim, hidden_size}
  std::string dims;            // the shape in words, e.g. "qk_dim x hidden_size"
};

// Tensor-name prefix of trunk block `layer` and of extra multi-token head `head` (1..n-1).
std::string BlockPrefix(int layer);
std::string MtpHeadPrefix(int head);

// Every tensor a checkpoint for `config` must hold, in a stable order: embeddings, blocks,
// out_norm, lm_head (left out when tie_word_embeddings), then the MTP heads. Honours
// weight_mode (fused names) and use_bias (which biases exist).
std::vector<ExpectedTensor> ExpectedCheckpointTensors(const ModelConfig& config);

// Sum of the elements of ExpectedCheckpointTensors(config).
int64_t ParameterCount(const ModelConfig& config);

}  // namespace xlserve
