#include "engine/state_layout.h"

namespace xlserve {

StateLayout StateLayout::ForModel(const ModelConfig& config) {
  StateLayout layout;
  layout.num_layers = config.num_blocks;
  if (config.mtp && config.mtp->head_type == MtpHeadType::kMlstmBlock) {
    layout.num_layers += config.mtp->num_heads - 1;
  }
  layout.num_heads = config.num_heads;
  layout.qk_head_dim = config.qk_head_dim();
  layout.v_head_dim = config.v_head_dim();
  return layout;
}

}  // namespace xlserve
