// ServerConfig: every setting of `xlserve serve`, and the one table (ServerSettings) from which
// its JSON keys (configs/server.json), command-line flags, --help text and range checks all
// derive (settings/settings_table.h).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "engine/device.h"
#include "engine/generator.h"
#include "engine/util/dtype.h"
#include "settings/settings_table.h"

namespace xlserve::server {

// Defaults are the initializers; the table below documents each field.
struct ServerConfig {
  std::string model = "models/xlstm-code-mtp";
  std::string model_name;
  std::string host = "127.0.0.1";
  int port = 50051;
  int metrics_port = 9090;
  Device device = Device::kAuto;
  DType state_dtype = DType::kF32;
  PrecisionSetting precision = PrecisionSetting::kAuto;
  int threads = 0;
  int tensor_parallel = 1;
  int max_num_seqs = 8;
  int max_queue = 64;
  int max_prompt_tokens = 8192;
  int max_tokens = 4096;
  int default_max_tokens = 256;
  int max_n = 8;
  int max_message_bytes = 4 << 20;
  int step_token_budget = 512;
  int prefill_chunk_while_decoding = 128;
  double request_timeout_s = 600;
  double shutdown_grace_s = 5;  // docker stop waits 10 s
  int state_cache_gpu_mb = -1;
  int state_cache_host_mb = -1;
  int prefix_cache_min_tokens = 16;
  int max_sessions = 100000;
  double session_ttl_s = 1800;
  SpeculationMode speculation = SpeculationMode::kAuto;
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

// Every setting, in --help order.
const settings::SettingsTable<ServerConfig>& ServerSettings();

// The table's ranges, then the rules that tie settings together. INVALID_ARGUMENT naming the
// setting.
absl::Status ValidateServerConfig(const ServerConfig& config);

}  // namespace xlserve::server
