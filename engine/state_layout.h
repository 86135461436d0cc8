// StateLayout: where each layer's mLSTM state lives inside one sequence's state slot.
//
// A slot holds, for each stateful layer l (the trunk's blocks, then block-type MTP heads)
// and each head h, in this order and as fp32:
//   C[l][h] : [qk_head_dim, v_head_dim] row-major   (matrix memory, stabilised by e^{-m})
//   n[l][h] : [qk_head_dim]                          (normaliser)
//   m[l][h] : scalar                                 (log-space stabiliser)
// The size is fixed by the model: it does not grow with the sequence.
#pragma once

#include <cstdint>

#include "engine/model/model_config.h"

namespace xlserve {

struct StateLayout {
  int num_layers = 0;
  int num_heads = 0;
  int qk_head_dim = 0;
  int v_head_dim = 0;

  static StateLayout ForModel(const ModelConfig& config);

  int64_t head_floats() const {
    return static_cast<int64_t>(qk_head_dim) * v_head_dim + qk_head_dim + 1;
  }
  int64_t layer_floats() const { return head_floats() * num_heads; }
  int64_t slot_floats() const { return layer_floats() * num_layers; }

  // Offsets (in floats) of one head's C, n and m inside a slot.
  int64_t c_offset(int layer, int head) const {
    return static_cast<int64_t>(layer) * layer_floats() + head * head_floats();
  }
  int64_t n_offset(int layer, int head) const {
    return c_offset(layer, head) + static_cast<int64_t>(qk_head_dim) * v_head_dim;
  }
  int64_t m_offset(int layer, int head) const { return n_offset(layer, head) + qk_head_dim; }
};

}  // namespace xlserve
