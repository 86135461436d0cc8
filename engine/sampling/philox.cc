#include "engine/sampling/philox.h"

#include "engine/sampling/philox_core.h"

namespace xlserve {

PhiloxCounter Philox4x32_10(PhiloxCounter counter, PhiloxKey key) {
  const philox::Block out =
      philox::Philox4x32_10(philox::Block{{counter[0], counter[1], counter[2], counter[3]}}, key[0], key[1]);
  return {out.w[0], out.w[1], out.w[2], out.w[3]};
}

double PhiloxUniform(uint64_t seed, uint64_t index) { return philox::Uniform(seed, index); }

}  // namespace xlserve
