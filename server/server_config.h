// ServerConfig: every setting of `xlserve serve`, and the one table (ServerSettings) from which
// its JSON keys, command-line flags, --help text and range checks all derive.
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace xlserve::server {

// Defaults are the initializers; the table below documents each field.
struct ServerConfig {
  std::string model = "models/xlstm-code-mtp";
  std::string model_name;
  std::string host = "127.0.0.1";
  int port = 50051;
  int metrics_port = 9090;
  std::string device = "auto";
  std::string state_dtype = "f32";
  std::string precision = "auto";
  int threads = 0;
  int max_num_seqs = 8;
  int max_queue = 64;
  int max_prompt_tokens = 8192;
  int max_tokens = 4096;
  int default_max_tokens = 256;
  int max_n = 8;
  int max_message_bytes = 4 << 20;
  int step_token_budget = 512;
  int prefill_chunk_while_decoding = 64;
  double request_timeout_s = 600;
  double shutdown_grace_s = 5;  // docker stop waits 10 s
  int state_cache_gpu_mb = -1;
  int state_cache_host_mb = -1;
  int prefix_cache_min_tokens = 16;
  int max_sessions = 100000;
  double session_ttl_s = 1800;
  std::string speculation = "auto";
  int num_draft = 3;
  bool warm_up = true;
  // Security. Keys come from api_key_file and $XLSERVE_API_KEYS; with any, XlServe calls need
  // "authorization: Bearer KEY" metadata (gRPC health stays open for probes).
  std::string api_key_file;
  std::string tls_cert_file;       // PEM certificate chain; with tls_key_file: serve TLS
  std::string tls_key_file;        // PEM private key
  std::string tls_client_ca_file;  // PEM roots: require client certificates signed by them
  bool reflection = true;          // gRPC server reflection (grpcurl without .proto files)
};

struct ServerSetting {
  using Field = std::variant<int ServerConfig::*, double ServerConfig::*, std::string ServerConfig::*,
                             bool ServerConfig::*>;
  std::string_view key;  // JSON key; the flag is --key with '-' for '_'
  Field field;
  std::string_view help;
  double min = -1e300;  // numbers: the accepted range
  double max = 1e300;
  std::vector<std::string_view> choices = {};  // strings: the accepted values (empty: any)
};

// Every setting, in --help order.
const std::vector<ServerSetting>& ServerSettings();
// "max_num_seqs" -> "max-num-seqs".
std::string FlagName(std::string_view key);

// Applies the keys of a JSON object over `config`; unknown keys and wrong types are errors
// naming the key.
absl::Status ApplyServerConfigJson(const nlohmann::json& j, ServerConfig* config);
absl::Status LoadServerConfigFile(const std::string& path, ServerConfig* config);
// Ranges and choices from the table, then the rules that tie settings together.
absl::Status ValidateServerConfig(const ServerConfig& config);

}  // namespace xlserve::server
