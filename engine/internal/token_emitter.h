// Generator-private: appends generated tokens and decides when a sequence is finished, so the
// plain and the speculative loops finish under exactly the same rules.
#pragma once

#include <algorithm>
#include <functional>

#include "engine/generator.h"

namespace xlserve {

struct Generator::Emitter {
  const GenerationRequest& request;
  GenerationResult& result;
  const std::function<void(int32_t)>& on_token;
  bool finished = false;

  // Records `token`; returns true once the sequence is finished (stop token or length).
  bool Emit(int32_t token) {
    result.tokens.push_back(token);
    if (on_token) on_token(token);
    if (std::find(request.stop_token_ids.begin(), request.stop_token_ids.end(), token) !=
        request.stop_token_ids.end()) {
      result.finish_reason = FinishReason::kStop;
      finished = true;
    } else if (remaining() == 0) {
      result.finish_reason = FinishReason::kLength;
      finished = true;
    }
    return finished;
  }

  int remaining() const { return request.max_new_tokens - static_cast<int>(result.tokens.size()); }
};

}  // namespace xlserve
