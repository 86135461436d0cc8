// The OpenAI-compatible wire format: request bodies of /v1/completions and
// /v1/chat/completions mapped onto xlserve.v1.GenerateRequest, response and stream-chunk
// bodies built from GenerateResponse messages, and OpenAI error objects.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "proto/xlserve/v1/xlserve.pb.h"

namespace xlserve::gateway {

// How chat messages become one prompt: each message is `message` with {role} and {content}
// replaced, then `generation_prompt` opens the assistant's turn.
struct ChatTemplate {
  std::string message = "<|{role}|>\n{content}\n";
  std::string generation_prompt = "<|assistant|>\n";
};

// Reads `model_dir`/chat_template.json ({"message": ..., "generation_prompt": ...}) if present.
absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir);
// The same from parsed JSON; `origin` names it in errors.
absl::StatusOr<ChatTemplate> ParseChatTemplate(const nlohmann::json& j, const std::string& origin);

// Bounds the gateway checks itself (the server checks its own, usually tighter, limits).
inline constexpr int kMaxChoices = 128;
inline constexpr int kMaxLogprobs = 20;
// Leaves room within the server's 256 bytes for the prefix that binds a session to its key.
inline constexpr size_t kMaxSessionIdBytes = 200;

struct CompletionCall {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  std::string model;
  std::string affinity_key;  // session_id, else user
  v1::GenerateRequest request;
};

// INVALID_ARGUMENT naming the field for anything OpenAI's API would reject, and for numbers
// that do not fit the protocol's fields (never wrapped).
absl::StatusOr<CompletionCall> ParseCompletionCall(const nlohmann::json& body, bool chat, const ChatTemplate& tmpl);

// INVALID_ARGUMENT for a session id that is too long or holds control characters.
absl::Status ValidateSessionId(const std::string& id);

// OpenAI's finish reasons: xlserve's "eos" and "stop" are both "stop".
nlohmann::json FinishReason(const std::string& reason);

// A message's logprobs in the completions (`chat` false) or chat format; null when it has none.
nlohmann::json LogprobsJson(const v1::GenerateResponse& message, bool chat);

nlohmann::json UsageJson(int prompt_tokens, int completion_tokens, int cached_tokens);

// OpenAI's error type for an HTTP status.
std::string ErrorType(int http_status);

nlohmann::json ErrorBody(const std::string& message, const std::string& type, const std::string& code);

}  // namespace xlserve::gateway
