#include "server/server_config.h"

#include <fstream>

namespace xlserve::server {
namespace {

template <typename T>
absl::Status Read(const nlohmann::json& j, const char* key, T* out) {
  if (!j.contains(key)) return absl::OkStatus();
  try {
    *out = j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    return absl::InvalidArgumentError(std::string("server config key \"") + key + "\" has the wrong type: " +
                                      j.at(key).dump());
  }
  return absl::OkStatus();
}

absl::Status Positive(const char* name, double v) {
  if (v > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string(name) + " must be > 0, got " + std::to_string(v));
}

}  // namespace

absl::Status ApplyServerConfigJson(const nlohmann::json& j, ServerConfig* c) {
  if (!j.is_object()) return absl::InvalidArgumentError("server config must be a JSON object");
  static const char* kKeys[] = {"model", "model_name", "host", "port", "metrics_port", "device", "state_dtype", "threads",
                                "max_num_seqs", "max_queue", "max_prompt_tokens", "max_tokens",
                                "default_max_tokens", "max_n", "max_message_bytes", "step_token_budget",
                                "request_timeout_s", "shutdown_grace_s", "max_sessions", "session_ttl_s",
                                "prefix_cache_mb", "prefix_cache_block",
                                "speculation", "num_draft", "api_key_file", "tls_cert_file", "tls_key_file",
                                "tls_client_ca_file", "reflection"};
  for (const auto& [key, value] : j.items()) {
    if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys)) {
      return absl::InvalidArgumentError("unknown server config key \"" + key + "\"");
    }
  }
  absl::Status st;
  for (absl::Status s : {Read(j, "model", &c->model), Read(j, "model_name", &c->model_name), Read(j, "host", &c->host),
                         Read(j, "port", &c->port), Read(j, "metrics_port", &c->metrics_port),
                         Read(j, "device", &c->device), Read(j, "state_dtype", &c->state_dtype),
                         Read(j, "threads", &c->threads),
                         Read(j, "max_num_seqs", &c->max_num_seqs), Read(j, "max_queue", &c->max_queue),
                         Read(j, "max_prompt_tokens", &c->max_prompt_tokens), Read(j, "max_tokens", &c->max_tokens),
                         Read(j, "default_max_tokens", &c->default_max_tokens), Read(j, "max_n", &c->max_n),
                         Read(j, "max_message_bytes", &c->max_message_bytes),
                         Read(j, "step_token_budget", &c->step_token_budget),
                         Read(j, "request_timeout_s", &c->request_timeout_s),
                         Read(j, "shutdown_grace_s", &c->shutdown_grace_s),
                         Read(j, "max_sessions", &c->max_sessions), Read(j, "session_ttl_s", &c->session_ttl_s),
                         Read(j, "prefix_cache_mb", &c->prefix_cache_mb),
                         Read(j, "prefix_cache_block", &c->prefix_cache_block), Read(j, "speculation", &c->speculation),
                         Read(j, "num_draft", &c->num_draft), Read(j, "api_key_file", &c->api_key_file),
                         Read(j, "tls_cert_file", &c->tls_cert_file), Read(j, "tls_key_file", &c->tls_key_file),
                         Read(j, "tls_client_ca_file", &c->tls_client_ca_file), Read(j, "reflection", &c->reflection)}) {
    if (!s.ok()) return s;
  }
  return st;
}

absl::Status LoadServerConfigFile(const std::string& path, ServerConfig* config) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open server config " + path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError("server config " + path + " is not valid JSON");
  absl::Status st = ApplyServerConfigJson(j, config);
  if (!st.ok()) return absl::InvalidArgumentError(path + ": " + std::string(st.message()));
  return absl::OkStatus();
}

absl::Status ValidateServerConfig(const ServerConfig& c) {
  if (c.port < 0 || c.port > 65535) return absl::InvalidArgumentError("port must be in [0, 65535]");
  if (c.metrics_port < -1 || c.metrics_port > 65535) {
    return absl::InvalidArgumentError("metrics_port must be -1 (off) or in [0, 65535]");
  }
  for (auto [name, v] : {std::pair{"max_num_seqs", double(c.max_num_seqs)}, std::pair{"max_queue", double(c.max_queue)},
                         std::pair{"max_prompt_tokens", double(c.max_prompt_tokens)},
                         std::pair{"max_tokens", double(c.max_tokens)},
                         std::pair{"default_max_tokens", double(c.default_max_tokens)},
                         std::pair{"max_n", double(c.max_n)}, std::pair{"max_message_bytes", double(c.max_message_bytes)},
                         std::pair{"step_token_budget", double(c.step_token_budget)},
                         std::pair{"request_timeout_s", c.request_timeout_s},
                         std::pair{"session_ttl_s", c.session_ttl_s},
                         std::pair{"prefix_cache_block", double(c.prefix_cache_block)}}) {
    if (absl::Status st = Positive(name, v); !st.ok()) return st;
  }
  if (c.default_max_tokens > c.max_tokens) {
    return absl::InvalidArgumentError("default_max_tokens must be <= max_tokens");
  }
  if (c.max_sessions < 0 || c.prefix_cache_mb < 0 || c.num_draft < 0 || c.threads < 0 || c.shutdown_grace_s < 0) {
    return absl::InvalidArgumentError(
        "max_sessions, prefix_cache_mb, num_draft, threads and shutdown_grace_s must be >= 0");
  }
  if (c.state_dtype != "f32" && c.state_dtype != "bf16") {
    return absl::InvalidArgumentError("state_dtype must be f32 or bf16, got \"" + c.state_dtype + "\"");
  }
  if (c.speculation != "off" && c.speculation != "on" && c.speculation != "auto") {
    return absl::InvalidArgumentError("speculation must be off, on or auto, got \"" + c.speculation + "\"");
  }
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return absl::InvalidArgumentError("tls_cert_file and tls_key_file go together");
  }
  if (!c.tls_client_ca_file.empty() && c.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("tls_client_ca_file needs tls_cert_file and tls_key_file");
  }
  return absl::OkStatus();
}

}  // namespace xlserve::server
