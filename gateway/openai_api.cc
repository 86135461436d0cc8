#include "gateway/openai_api.h"

#include <cmath>
#include <climits>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string_view>

namespace xlserve::gateway {
namespace {

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError("'" + field + "' " + why);
}

// One pass over the template: text substituted for a placeholder is never searched again, so
// a role or content that itself contains "{content}" costs its own length, not a product.
std::string Render(const std::string& text, const std::string& role, const std::string& content) {
  static constexpr std::string_view kRole = "{role}", kContent = "{content}";
  std::string out;
  out.reserve(text.size() + role.size() + content.size());
  for (size_t at = 0; at < text.size();) {
    const std::string_view rest = std::string_view(text).substr(at);
    if (rest.substr(0, kRole.size()) == kRole) {
      out += role;
      at += kRole.size();
    } else if (rest.substr(0, kContent.size()) == kContent) {
      out += content;
      at += kContent.size();
    } else {
      out += text[at++];
    }
  }
  return out;
}

bool Present(const nlohmann::json& body, const char* key) { return body.contains(key) && !body.at(key).is_null(); }

// An integer field within [lo, hi]. json's get<int>() would wrap 4294967297 to 1 silently.
absl::Status Integer(const nlohmann::json& body, const char* key, int64_t lo, int64_t hi, std::optional<int64_t>* out) {
  if (!Present(body, key)) return absl::OkStatus();
  const nlohmann::json& v = body.at(key);
  if (!v.is_number_integer()) return Bad(key, "must be an integer");
  // json keeps non-negative numbers unsigned: compare those as unsigned, against both bounds.
  const bool in_range =
      v.is_number_unsigned()
          ? v.get<uint64_t>() <= static_cast<uint64_t>(hi) && (lo <= 0 || v.get<uint64_t>() >= static_cast<uint64_t>(lo))
          : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
  if (!in_range) return Bad(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  *out = v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
  return absl::OkStatus();
}

// A number field that stays finite as a float (1e300 would become inf); sets *present.
absl::Status Real(const nlohmann::json& body, const char* key, float* out, bool* present) {
  if (!Present(body, key)) return absl::OkStatus();
  if (!body.at(key).is_number()) return Bad(key, "must be a number");
  *out = static_cast<float>(body.at(key).get<double>());
  if (!std::isfinite(*out)) return Bad(key, "is out of range");
  *present = true;
  return absl::OkStatus();
}

absl::Status Boolean(const nlohmann::json& body, const char* key, bool* out) {
  if (!Present(body, key)) return absl::OkStatus();
  if (!body.at(key).is_boolean()) return Bad(key, "must be a boolean");
  *out = body.at(key).get<bool>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir) {
  const std::filesystem::path path = std::filesystem::path(model_dir) / "chat_template.json";
  if (model_dir.empty() || !std::filesystem::exists(path)) return ChatTemplate{};
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  return ParseChatTemplate(j, path.string());
}

absl::StatusOr<ChatTemplate> ParseChatTemplate(const nlohmann::json& j, const std::string& origin) {
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(origin + " is not a JSON object");
  ChatTemplate t;
  for (auto [key, field] : {std::pair{"message", &t.message}, std::pair{"generation_prompt", &t.generation_prompt}}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_string()) return absl::InvalidArgumentError(origin + ": \"" + key + "\" must be a string");
    *field = j[key].get<std::string>();
  }
  return t;
}

absl::StatusOr<CompletionCall> ParseCompletionCall(const nlohmann::json& body, bool chat, const ChatTemplate& tmpl) {
  if (!body.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  CompletionCall call;
  call.chat = chat;
  v1::GenerateRequest& r = call.request;
  if (body.contains("model")) {
    if (!body["model"].is_string()) return Bad("model", "must be a string");
    call.model = body["model"].get<std::string>();
    r.set_model(call.model);
  }
  if (chat) {
    if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
      return Bad("messages", "must be a non-empty array");
    }
    std::string prompt;
    for (const auto& m : body["messages"]) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
        return Bad("messages", "entries need a string 'role'");
      }
      if (!m.contains("content") || !m["content"].is_string()) {
        return Bad("messages", "entries need a string 'content'");
      }
      prompt += Render(tmpl.message, m["role"].get<std::string>(), m["content"].get<std::string>());
    }
    r.set_prompt(prompt + tmpl.generation_prompt);
  } else {
    if (!body.contains("prompt")) return Bad("prompt", "is required");
    const auto& p = body["prompt"];
    if (p.is_string()) {
      if (p.get<std::string>().empty()) return Bad("prompt", "must not be empty");
      r.set_prompt(p.get<std::string>());
    } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
      for (const auto& id : p) {
        // Ids beyond int32 would wrap into the vocabulary; the server checks the vocabulary.
        if (!id.is_number_integer() || (id.is_number_unsigned() ? id.get<uint64_t>() > INT32_MAX : id.get<int64_t>() < 0)) {
          return Bad("prompt", "token arrays must hold integers in [0, 2147483647]");
        }
        r.add_prompt_token_ids(static_cast<int32_t>(id.get<int64_t>()));
      }
    } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
      if (p[0].get<std::string>().empty()) return Bad("prompt", "must not be empty");
      r.set_prompt(p[0].get<std::string>());
    } else {
      return Bad("prompt", "must be a string or an array of token ids");
    }
  }
  std::optional<int64_t> integer;
  const char* max_key = chat && Present(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (absl::Status st = Integer(body, max_key, 1, INT32_MAX, &integer); !st.ok()) return st;
  if (integer) r.set_max_tokens(static_cast<int32_t>(*integer));
  using FloatSetter = void (v1::GenerateRequest::*)(float);
  for (auto [key, set] : {std::pair<const char*, FloatSetter>{"temperature", &v1::GenerateRequest::set_temperature},
                          {"top_p", &v1::GenerateRequest::set_top_p},
                          {"presence_penalty", &v1::GenerateRequest::set_presence_penalty},
                          {"frequency_penalty", &v1::GenerateRequest::set_frequency_penalty}}) {
    float value = 0;
    bool present = false;
    if (absl::Status st = Real(body, key, &value, &present); !st.ok()) return st;
    if (present) (r.*set)(value);
  }
  integer.reset();
  if (absl::Status st = Integer(body, "n", 1, kMaxChoices, &integer); !st.ok()) return st;
  r.set_n(integer ? static_cast<int32_t>(*integer) : 1);
  integer.reset();
  if (Present(body, "seed")) {
    // Any 64-bit integer, signed or not: the server takes the bits as its seed.
    const auto& seed = body["seed"];
    if (!seed.is_number_integer()) return Bad("seed", "must be an integer");
    r.set_seed(seed.is_number_unsigned() ? seed.get<uint64_t>() : static_cast<uint64_t>(seed.get<int64_t>()));
  }
  if (Present(body, "stop")) {
    const auto& s = body["stop"];
    if (s.is_string()) {
      r.add_stop(s.get<std::string>());
    } else if (s.is_array()) {
      for (const auto& x : s) {
        if (!x.is_string()) return Bad("stop", "must be a string or an array of strings");
        r.add_stop(x.get<std::string>());
      }
    } else {
      return Bad("stop", "must be a string or an array of strings");
    }
  }
  if (chat) {
    bool logprobs = false;
    if (absl::Status st = Boolean(body, "logprobs", &logprobs); !st.ok()) return st;
    if (logprobs) {
      if (absl::Status st = Integer(body, "top_logprobs", 0, kMaxLogprobs, &integer); !st.ok()) return st;
      r.set_logprobs(std::max<int32_t>(1, static_cast<int32_t>(integer.value_or(0))));
      call.logprobs = true;
    }
  } else {
    if (absl::Status st = Integer(body, "logprobs", 0, kMaxLogprobs, &integer); !st.ok()) return st;
    r.set_logprobs(static_cast<int32_t>(integer.value_or(0)));
    call.logprobs = r.logprobs() > 0;
  }
  if (absl::Status st = Boolean(body, "stream", &call.stream); !st.ok()) return st;
  if (Present(body, "stream_options")) {
    if (!body["stream_options"].is_object()) return Bad("stream_options", "must be an object");
    const nlohmann::json& options = body["stream_options"];
    if (absl::Status st = Boolean(options, "include_usage", &call.include_usage); !st.ok()) return st;
  }
  bool ignore_eos = false;
  if (absl::Status st = Boolean(body, "ignore_eos", &ignore_eos); !st.ok()) return st;
  r.set_ignore_eos(ignore_eos);
  if (Present(body, "session_id")) {
    if (!body["session_id"].is_string()) return Bad("session_id", "must be a string");
    const std::string id = body["session_id"].get<std::string>();
    if (absl::Status st = ValidateSessionId(id); !st.ok()) return st;
    r.set_session_id(id);
    call.affinity_key = id;
  }
  if (Present(body, "user")) {
    if (!body["user"].is_string()) return Bad("user", "must be a string");
    if (call.affinity_key.empty()) call.affinity_key = body["user"].get<std::string>();
  }
  return call;
}

absl::Status ValidateSessionId(const std::string& id) {
  if (id.size() > kMaxSessionIdBytes) {
    return Bad("session_id", "is longer than " + std::to_string(kMaxSessionIdBytes) + " bytes");
  }
  // It reaches log lines: a newline or an escape sequence there could forge or hide entries.
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f) return Bad("session_id", "must not contain control characters");
  }
  return absl::OkStatus();
}

nlohmann::json FinishReason(const std::string& reason) {
  if (reason.empty()) return nullptr;
  if (reason == "eos") return "stop";
  return reason;
}

nlohmann::json LogprobsJson(const v1::GenerateResponse& m, bool chat) {
  using nlohmann::json;
  if (m.logprobs_size() == 0) return nullptr;
  if (chat) {
    json content = json::array();
    for (const auto& lp : m.logprobs()) {
      json top = json::array();
      for (const auto& t : lp.top_logprobs()) {
        top.push_back({{"token", std::to_string(t.token_id())}, {"logprob", t.logprob()}});
      }
      content.push_back({{"token", std::to_string(lp.token_id())}, {"logprob", lp.logprob()}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array();
  for (const auto& lp : m.logprobs()) {
    tokens.push_back(std::to_string(lp.token_id()));
    token_logprobs.push_back(lp.logprob());
    json alts = json::object();
    for (const auto& t : lp.top_logprobs()) alts[std::to_string(t.token_id())] = t.logprob();
    top.push_back(alts);
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}};
}

nlohmann::json UsageJson(int prompt, int completion, int cached) {
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

std::string ErrorType(int http) {
  switch (http) {
    case 400: case 413: case 415: return "invalid_request_error";
    case 401: return "authentication_error";
    case 404: case 405: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return "server_error";
  }
}

nlohmann::json ErrorBody(const std::string& message, const std::string& type, const std::string& code) {
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

}  // namespace xlserve::gateway
