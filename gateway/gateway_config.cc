#include "gateway/gateway_config.h"

namespace xlserve::gateway {
namespace {

using C = GatewayConfig;
constexpr double kLarge = 1 << 30;
constexpr settings::Range kSeconds = {1e-3, 1e9};

}  // namespace

const settings::SettingsTable<GatewayConfig>& GatewaySettings() {
  static const settings::SettingsTable<GatewayConfig> table = {
      {"upstream", &C::upstreams,
       "xlserve gRPC replicas: HOST:PORT, or dns:///NAME:PORT for one replica per address of NAME, re-resolved "
       "every 5 s (repeat the flag or separate with commas)"},
      {"upstream_metrics", &C::upstream_metrics, "HOST:PORT of replicas' /metrics to re-export, labelled upstream"},
      {"host", &C::host, "address to bind"},
      {"port", &C::port, "HTTP port (0: any free port)", {0, 65535}},
      {"api_key_file", &C::api_key_file,
       "file of accepted API keys, one per line (also $XLSERVE_GATEWAY_API_KEYS, comma-separated): every endpoint "
       "but /livez then needs Authorization: Bearer KEY"},
      {"api_key", &C::api_key, "an accepted API key (visible in ps: prefer --api-key-file)"},
      {"upstream_api_key_file", &C::upstream_api_key_file,
       "file holding the key sent to the replicas (else $XLSERVE_UPSTREAM_API_KEY)"},
      {"upstream_tls_ca", &C::upstream_tls_ca_file, "PEM root certificates: talk TLS to the replicas"},
      {"max_in_flight_per_upstream", &C::max_in_flight_per_upstream,
       "requests a replica takes at once before 429 (0: its max_num_seqs)", {0, kLarge}},
      {"request_timeout_s", &C::request_timeout_s, "seconds before an upstream call gives up", kSeconds},
      {"max_body_mb", &C::max_body_mb, "largest request body, MiB", {1e-3, 1024}},
      {"model", &C::model_dir, "model directory holding chat_template.json, if any"},
      {"threads", &C::threads, "requests served at once (each stream holds one)", {1, 1 << 16}},
      {"max_connections", &C::max_connections, "open HTTP connections; more are refused with 503", {1, 1 << 20}},
      {"header_timeout_s", &C::header_timeout_s, "seconds for a request's headers to arrive", kSeconds},
      {"idle_timeout_s", &C::idle_timeout_s, "seconds a keep-alive connection may idle", kSeconds},
      {"body_timeout_s", &C::body_timeout_s, "seconds for a request's body to arrive", kSeconds},
      {"shutdown_grace_s", &C::shutdown_grace_s,
       "seconds running requests may finish on SIGTERM before they are cancelled", {0, 1e9}},
  };
  return table;
}

absl::Status LoadGatewayCredentials(GatewayConfig* config) {
  if (absl::Status st = settings::CheckRanges(GatewaySettings(), *config); !st.ok()) return st;
  absl::StatusOr<net::ApiKeys> keys =
      net::ApiKeys::Load(config->api_key_file, "XLSERVE_GATEWAY_API_KEYS", config->api_key);
  if (!keys.ok()) return keys.status();
  config->api_keys = *keys;
  absl::StatusOr<std::string> upstream_key =
      net::LoadClientKey(config->upstream_api_key_file, "XLSERVE_UPSTREAM_API_KEY");
  if (!upstream_key.ok()) return upstream_key.status();
  config->upstream_api_key = *upstream_key;
  if (!config->upstream_tls_ca_file.empty()) {
    absl::StatusOr<std::string> pem = net::ReadCredentialFile(config->upstream_tls_ca_file);
    if (!pem.ok()) return pem.status();
    config->upstream_tls_ca_pem = *pem;
  }
  return absl::OkStatus();
}

}  // namespace xlserve::gateway
