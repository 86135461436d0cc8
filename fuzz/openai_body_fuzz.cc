// The gateway's reading of OpenAI request bodies (completions and chat) on arbitrary JSON: a
// body is mapped or refused with INVALID_ARGUMENT, never an exception, and what is mapped fits
// the protocol (no wrapped numbers, no control characters in session ids).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "gateway/openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json body = nlohmann::json::parse(data, data + size, nullptr, false);
  if (body.is_discarded()) return 0;
  for (bool chat : {false, true}) {
    absl::StatusOr<xlserve::gateway::CompletionCall> call =
        xlserve::gateway::ParseCompletionCall(body, chat, xlserve::gateway::ChatTemplate{});
    if (!call.ok()) {
      if (call.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
      continue;
    }
    const xlserve::v1::GenerateRequest& r = call->request;
    bool ok = r.n() >= 1 && r.n() <= xlserve::gateway::kMaxChoices && (!r.has_max_tokens() || r.max_tokens() >= 1) &&
              r.logprobs() >= 0 && r.logprobs() <= xlserve::gateway::kMaxLogprobs &&
              xlserve::gateway::ValidateSessionId(r.session_id()).ok() &&
              r.prompt().empty() != (r.prompt_token_ids_size() == 0);
    for (int32_t id : r.prompt_token_ids()) ok = ok && id >= 0;
    if (!ok) std::abort();
    (void)r.ByteSizeLong();
  }
  return 0;
}
