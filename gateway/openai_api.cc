#include "gateway/openai_api.h"

#include <filesystem>
#include <fstream>

namespace xlserve::gateway {
namespace {

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError("'" + field + "' " + why);
}

std::string Render(std::string text, const std::string& role, const std::string& content) {
  for (auto [key, value] : {std::pair<std::string, const std::string*>{"{role}", &role}, {"{content}", &content}}) {
    for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + value->size())) {
      text.replace(at, key.size(), *value);
    }
  }
  return text;
}

template <typename T>
absl::Status Number(const nlohmann::json& body, const char* key, T* out, bool* present = nullptr) {
  if (!body.contains(key) || body.at(key).is_null()) return absl::OkStatus();
  if (!body.at(key).is_number()) return Bad(key, "must be a number");
  *out = body.at(key).get<T>();
  if (present) *present = true;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir) {
  ChatTemplate t;
  const std::filesystem::path path = std::filesystem::path(model_dir) / "chat_template.json";
  if (model_dir.empty() || !std::filesystem::exists(path)) return t;
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(path.string() + " is not a JSON object");
  t.message = j.value("message", t.message);
  t.generation_prompt = j.value("generation_prompt", t.generation_prompt);
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
        if (!id.is_number_integer()) return Bad("prompt", "token arrays must hold integers");
        r.add_prompt_token_ids(id.get<int32_t>());
      }
    } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
      r.set_prompt(p[0].get<std::string>());
    } else {
      return Bad("prompt", "must be a string or an array of token ids");
    }
  }
  int max_tokens = 0;
  bool has_max = false;
  const char* max_key = chat && body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (absl::Status st = Number(body, max_key, &max_tokens, &has_max); !st.ok()) return st;
  if (has_max) r.set_max_tokens(max_tokens);
  float f = 0;
  bool present = false;
  if (absl::Status st = Number(body, "temperature", &f, &present); !st.ok()) return st;
  if (present) r.set_temperature(f);
  present = false;
  if (absl::Status st = Number(body, "top_p", &f, &present); !st.ok()) return st;
  if (present) r.set_top_p(f);
  present = false;
  if (absl::Status st = Number(body, "presence_penalty", &f, &present); !st.ok()) return st;
  if (present) r.set_presence_penalty(f);
  present = false;
  if (absl::Status st = Number(body, "frequency_penalty", &f, &present); !st.ok()) return st;
  if (present) r.set_frequency_penalty(f);
  int n = 1;
  if (absl::Status st = Number(body, "n", &n); !st.ok()) return st;
  r.set_n(n);
  int64_t seed = 0;
  present = false;
  if (absl::Status st = Number(body, "seed", &seed, &present); !st.ok()) return st;
  if (present) r.set_seed(static_cast<uint64_t>(seed));
  if (body.contains("stop") && !body["stop"].is_null()) {
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
    if (body.contains("logprobs") && body["logprobs"].is_boolean() && body["logprobs"].get<bool>()) {
      int top = 0;
      if (absl::Status st = Number(body, "top_logprobs", &top); !st.ok()) return st;
      r.set_logprobs(std::max(1, top));
      call.logprobs = true;
    }
  } else if (body.contains("logprobs") && !body["logprobs"].is_null()) {
    if (!body["logprobs"].is_number_integer()) return Bad("logprobs", "must be an integer");
    r.set_logprobs(body["logprobs"].get<int>());
    call.logprobs = r.logprobs() > 0;
  }
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) return Bad("stream", "must be a boolean");
    call.stream = body["stream"].get<bool>();
  }
  if (body.contains("stream_options") && body["stream_options"].is_object()) {
    call.include_usage = body["stream_options"].value("include_usage", false);
  }
  if (body.contains("ignore_eos") && body["ignore_eos"].is_boolean()) r.set_ignore_eos(body["ignore_eos"].get<bool>());
  if (body.contains("session_id")) {
    if (!body["session_id"].is_string()) return Bad("session_id", "must be a string");
    r.set_session_id(body["session_id"].get<std::string>());
    call.affinity_key = r.session_id();
  }
  if (call.affinity_key.empty() && body.contains("user") && body["user"].is_string()) {
    call.affinity_key = body["user"].get<std::string>();
  }
  return call;
}

nlohmann::json FinishReason(const std::string& reason) {
  if (reason.empty()) return nullptr;
  if (reason == "eos") return "stop";
  return reason;
}

nlohmann::json ErrorBody(const std::string& message, const std::string& type, const std::string& code) {
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

}  // namespace xlserve::gateway
