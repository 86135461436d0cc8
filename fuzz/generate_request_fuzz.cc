// BuildRequest (the server's validation of xlserve.v1.GenerateRequest) on arbitrary protobuf
// bytes against the shipped model: whatever it accepts must respect every limit the scheduler
// relies on; whatever it refuses must be INVALID_ARGUMENT or NOT_FOUND.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz/fuzz_support.h"
#include "server/xlserve_service.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  xlserve::v1::GenerateRequest proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) return 0;
  static const xlserve::server::ServerConfig config = [] {
    xlserve::server::ServerConfig c;
    c.model_name = "xlstm-code-mtp";
    c.max_prompt_tokens = 512;  // keeps each input's encoding cheap
    return c;
  }();
  const xlserve::ModelConfig& model = xlserve::fuzz::ShippedConfig();
  absl::StatusOr<std::shared_ptr<xlserve::server::Request>> built =
      xlserve::server::BuildRequest(proto, config, model, &xlserve::fuzz::ShippedTokenizer(), 3);
  if (!built.ok()) {
    const absl::StatusCode code = built.status().code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kNotFound) std::abort();
    return 0;
  }
  const xlserve::server::Request& r = **built;
  const xlserve::GenerationRequest& g = r.generation;
  bool ok = !g.prompt_ids.empty() && static_cast<int>(g.prompt_ids.size()) <= config.max_prompt_tokens &&
            g.max_new_tokens >= 1 && g.max_new_tokens <= config.max_tokens && r.n >= 1 && r.n <= config.max_n &&
            r.logprobs >= 0 && r.logprobs <= 20 && r.session_id.size() <= 256 && g.num_draft >= 0 &&
            g.num_draft <= std::max(3, config.num_draft) && r.stop_strings.size() <= 8 &&
            std::isfinite(g.sampling.temperature) && g.sampling.temperature >= 0;
  for (int32_t id : g.prompt_ids) ok = ok && id >= 0 && id < model.vocab_size;
  for (int32_t id : g.stop_token_ids) ok = ok && id >= 0 && id < model.vocab_size;
  for (unsigned char c : r.session_id) ok = ok && c >= 0x20 && c != 0x7f;
  if (!ok) std::abort();
  return 0;
}
