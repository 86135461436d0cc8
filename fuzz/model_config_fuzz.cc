// ParseModelConfig on arbitrary JSON: every key of the wrong type or out of range must be an
// error, never an exception or a crash, and an accepted config must validate and survive a
// round trip through ModelConfigToJson.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "engine/model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  absl::StatusOr<xlserve::ModelConfig> config = xlserve::ParseModelConfig(j);
  if (!config.ok()) return 0;
  if (!xlserve::ValidateModelConfig(*config).ok()) std::abort();
  (void)config->StateFloatsPerLayer();
  (void)config->ffn_dim();
  absl::StatusOr<xlserve::ModelConfig> again = xlserve::ParseModelConfig(xlserve::ModelConfigToJson(*config));
  if (!again.ok() || again->vocab_size != config->vocab_size || again->hidden_size != config->hidden_size ||
      again->num_blocks != config->num_blocks || again->eos_token_ids != config->eos_token_ids) {
    std::abort();
  }
  return 0;
}
