// ModelWeights: the checkpoint's tensors, checked against the config and arranged per block.
//
// Ownership: every TensorView points into the memory-mapped checkpoint files held by the
// Checkpoint inside ModelWeights, so views stay valid for the lifetime of the ModelWeights.
// Weights are immutable once loaded and may be shared by several backends or engines.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/model/tensor_view.h"
#include "engine/util/dtype.h"

namespace xlserve {

class Checkpoint;

// One xLSTM block. Fused checkpoints are presented through the same views (slices of the
// fused matrices), so backends see a single layout.
struct BlockWeights {
  TensorView norm_mlstm_w, norm_mlstm_b;  // [d]
  TensorView q_w, q_b;                    // [qk_dim, d], [qk_dim]
  TensorView k_w, k_b;                    // [qk_dim, d]
  TensorView v_w, v_b;                    // [v_dim, d]
  TensorView ogate_w, ogate_b;            // [v_dim, d]
  TensorView igate_w, igate_b;            // [heads, d], [heads] (bias always present)
  TensorView fgate_w, fgate_b;            // [heads, d], [heads]
  TensorView mh_norm_w, mh_norm_b;        // [v_dim]
  TensorView out_proj_w, out_proj_b;      // [d, v_dim]
  TensorView norm_ffn_w, norm_ffn_b;      // [d]
  TensorView up_gate_w, up_gate_b;        // [ffn, d]
  TensorView up_w, up_b;                  // [ffn, d]
  TensorView down_w, down_b;              // [d, ffn]
};

struct LinearHeadWeights {
  TensorView proj_w;  // [d, d]
};

struct ModelWeights {
  ModelConfig config;
  TensorView embeddings;  // [vocab, d]
  std::vector<BlockWeights> blocks;
  TensorView out_norm_w;  // [d]
  TensorView lm_head;     // [vocab, d]; the embeddings when tie_word_embeddings
  // Extra multi-token heads 1..n-1 (index 0 here is head 1); one of the two is filled.
  std::vector<BlockWeights> mtp_block_heads;
  std::vector<LinearHeadWeights> mtp_linear_heads;
  // Keeps the tensors' memory alive: the mapped checkpoint files, or host buffers made in memory.
  std::shared_ptr<const void> storage;
};

// Arranges named tensors (checkpoint names of DESIGN §2, already checked against `config`)
// into ModelWeights; `storage` owns their memory. Benchmarks use it for weights made in memory.
std::shared_ptr<const ModelWeights> AssembleModelWeights(
    const ModelConfig& config, const std::unordered_map<std::string, TensorView>& tensors,
    std::shared_ptr<const void> storage);

// Loads `model_dir`/config.json and the weights (model.safetensors or the sharded
// model.safetensors.index.json), checking every tensor's presence, dtype and shape.
absl::StatusOr<std::shared_ptr<const ModelWeights>> LoadModelWeights(const std::string& model_dir);

// Same, with an already parsed config (tests use it to load the same files under variants).
absl::StatusOr<std::shared_ptr<const ModelWeights>> LoadModelWeights(const std::string& model_dir,
                                                                     const ModelConfig& config);

}  // namespace xlserve
