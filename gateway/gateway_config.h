// GatewayConfig: every setting of `xlserve gateway`, the one table (GatewaySettings) from
// which its flags, --help text and range checks derive (settings/settings_table.h), and the
// credentials those settings point at.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "net/api_keys.h"
#include "settings/settings_table.h"

namespace xlserve::gateway {

struct GatewayConfig {
  // Settings; the table documents each.
  std::vector<std::string> upstreams = {"127.0.0.1:50051"};
  std::vector<std::string> upstream_metrics;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key_file;
  std::string api_key;
  std::string upstream_api_key_file;
  std::string upstream_tls_ca_file;
  int max_in_flight_per_upstream = 0;
  double request_timeout_s = 600;
  double max_body_mb = 4;
  std::string model_dir;
  int threads = 64;
  int max_connections = 512;
  double header_timeout_s = 10;
  double idle_timeout_s = 15;
  double body_timeout_s = 30;
  double shutdown_grace_s = 5;

  // Read by LoadGatewayCredentials from the files and environment variables above.
  net::ApiKeys api_keys;            // none: no authentication
  std::string upstream_api_key;     // sent to the replicas; empty: none
  std::string upstream_tls_ca_pem;  // roots for TLS to the replicas; empty: plaintext
};

// Every setting, in --help order.
const settings::SettingsTable<GatewayConfig>& GatewaySettings();

// Checks the settings' ranges, then reads the accepted keys (api_key_file,
// $XLSERVE_GATEWAY_API_KEYS, api_key), the key sent upstream (upstream_api_key_file, else
// $XLSERVE_UPSTREAM_API_KEY) and the upstream CA file. INVALID_ARGUMENT naming the setting or
// file at fault.
absl::Status LoadGatewayCredentials(GatewayConfig* config);

}  // namespace xlserve::gateway
