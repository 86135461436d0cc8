// ServerConfig: every setting of `xlserve serve`, parsed once from a JSON file and flags,
// then validated with messages that name the setting.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace xlserve::server {

struct ServerConfig {
  std::string model = "models/xlstm-code-mtp";
  std::string model_name;  // reported and matched against requests; default: the directory name
  std::string host = "127.0.0.1";
  int port = 50051;         // 0: any free port (printed at start)
  int metrics_port = 9090;  // /metrics and /health over HTTP; -1: off; 0: any free port
  std::string device = "auto";
  std::string state_dtype = "f32";  // f32 or bf16 (CUDA only)
  int threads = 0;
  int max_num_seqs = 8;
  int max_queue = 64;
  int max_prompt_tokens = 8192;
  int max_tokens = 4096;          // upper bound of a request's max_tokens
  int default_max_tokens = 256;   // when a request gives none
  int max_n = 8;
  int max_message_bytes = 4 << 20;
  int step_token_budget = 512;
  double request_timeout_s = 600;  // deadline for requests that set none
  double shutdown_grace_s = 5;  // on SIGTERM, running streams may finish this long (docker stop waits 10 s)
  int max_sessions = 256;
  double session_ttl_s = 1800;
  int64_t prefix_cache_mb = 256;
  int prefix_cache_block = 256;  // prompt tokens between prefix-cache snapshots
  std::string speculation = "auto";  // default for requests that leave it unspecified
  int num_draft = 3;
  // Security. Keys come from api_key_file and $XLSERVE_API_KEYS; with any, XlServe calls need
  // "authorization: Bearer KEY" metadata (gRPC health stays open for probes).
  std::string api_key_file;
  std::string tls_cert_file;       // PEM certificate chain; with tls_key_file: serve TLS
  std::string tls_key_file;        // PEM private key
  std::string tls_client_ca_file;  // PEM roots: require client certificates signed by them
  bool reflection = true;          // gRPC server reflection (grpcurl without .proto files)
};

// Applies the keys of a JSON object (same names as the fields) over `config`.
absl::Status ApplyServerConfigJson(const nlohmann::json& j, ServerConfig* config);
absl::Status LoadServerConfigFile(const std::string& path, ServerConfig* config);
absl::Status ValidateServerConfig(const ServerConfig& config);

}  // namespace xlserve::server
