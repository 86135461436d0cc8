// `xlserve gateway`: the OpenAI-compatible REST gateway in front of xlserve gRPC replicas.
#include <csignal>
#include <cstdio>
#include <sstream>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/termination_signals.h"
#include "gateway/gateway_server.h"
#include "net/api_keys.h"
#include "spdlog/spdlog.h"

namespace xlserve::cli {

int RunGateway(const std::vector<std::string>& raw_args) {
  gateway::GatewayConfig config;
  // --upstream may repeat (or hold a comma-separated list): collect it before the FlagSet.
  // --upstream and --upstream-metrics repeat (or hold comma-separated lists): collect them
  // before the FlagSet, which keeps one value per flag.
  std::vector<std::string> args;
  std::vector<std::string> upstreams;
  for (size_t i = 0; i < raw_args.size(); ++i) {
    std::vector<std::string>* list = nullptr;
    std::string value;
    for (auto [flag, target] : {std::pair{std::string("--upstream"), &upstreams},
                                std::pair{std::string("--upstream-metrics"), &config.upstream_metrics}}) {
      if (raw_args[i] == flag && i + 1 < raw_args.size()) {
        list = target;
        value = raw_args[i + 1];
      } else if (raw_args[i].rfind(flag + "=", 0) == 0) {
        list = target;
        value = raw_args[i].substr(flag.size() + 1);
      }
    }
    if (!list) {
      args.push_back(raw_args[i]);
      continue;
    }
    if (raw_args[i].find('=') == std::string::npos) ++i;
    std::stringstream ss(value);
    for (std::string item; std::getline(ss, item, ',');) {
      if (!item.empty()) list->push_back(item);
    }
  }
  if (!upstreams.empty()) config.upstreams = upstreams;
  double max_body_mb = static_cast<double>(config.max_body_bytes) / (1 << 20);
  std::string api_key, api_key_file, upstream_key_file, upstream_tls_ca;
  FlagSet flags("xlserve gateway", "[--upstream HOST:PORT ...] [--host H --port P] [flags]",
                "OpenAI-compatible REST API (/v1/completions, /v1/chat/completions with SSE,\n"
                "/v1/models, /health, /metrics, /livez) over xlserve gRPC replicas: least-loaded\n"
                "routing, session affinity (session_id, else user), failover. --upstream repeats.\n"
                "API keys: --api-key-file and $XLSERVE_GATEWAY_API_KEYS (comma-separated); every\n"
                "endpoint but /livez then needs \"Authorization: Bearer KEY\".");
  std::string upstream_help;
  flags.AddString("upstream", &upstream_help,
                  "an xlserve gRPC replica, HOST:PORT, or dns:///NAME:PORT for one replica per address of NAME, "
                  "re-resolved every 5 s (default 127.0.0.1:50051)");
  flags.AddString("upstream-metrics", &upstream_help, "HOST:PORT of a replica's /metrics to re-export");
  flags.AddString("host", &config.host, "address to bind");
  flags.AddInt("port", &config.port, "HTTP port (0: any free port)");
  flags.AddString("api-key-file", &api_key_file, "file of accepted API keys, one per line");
  flags.AddString("api-key", &api_key, "an accepted API key (visible in ps: prefer --api-key-file)");
  flags.AddString("upstream-api-key-file", &upstream_key_file,
                  "file holding the key sent to the replicas (else $XLSERVE_UPSTREAM_API_KEY)");
  flags.AddString("upstream-tls-ca", &upstream_tls_ca, "PEM root certificates: talk TLS to the replicas");
  flags.AddInt("max-in-flight-per-upstream", &config.upstream.max_in_flight,
               "requests a replica takes at once before 429 (0: its max_num_seqs)");
  flags.AddDouble("request-timeout-s", &config.request_timeout_s, "seconds before an upstream call gives up");
  flags.AddDouble("max-body-mb", &max_body_mb, "largest request body");
  flags.AddString("model-dir", &config.model_dir, "model directory holding chat_template.json, if any");
  flags.AddInt("threads", &config.threads, "requests served at once (each stream holds one)");
  flags.AddInt("max-connections", &config.max_connections, "open HTTP connections; more are refused with 503");
  flags.AddDouble("header-timeout-s", &config.header_timeout_s, "seconds for a request's headers to arrive");
  flags.AddDouble("idle-timeout-s", &config.idle_timeout_s, "seconds a keep-alive connection may idle");
  flags.AddDouble("body-timeout-s", &config.body_timeout_s, "seconds for a request's body to arrive");
  flags.AddDouble("shutdown-grace-s", &config.shutdown_grace_s,
                  "seconds running requests may finish on SIGTERM before they are cancelled");
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("gateway", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (max_body_mb <= 0 || config.request_timeout_s <= 0 || config.port < 0 || config.port > 65535 ||
      config.header_timeout_s <= 0 || config.idle_timeout_s <= 0 || config.body_timeout_s <= 0 ||
      config.shutdown_grace_s < 0 || config.upstream.max_in_flight < 0 || config.threads < 1 ||
      config.max_connections < 1) {
    return ReportError("gateway",
                       "--max-body-mb, --request-timeout-s and the timeouts must be > 0, --port in [0, 65535], "
                       "--threads and --max-connections >= 1, the rest >= 0");
  }
  config.max_body_bytes = static_cast<size_t>(max_body_mb * (1 << 20));
  absl::StatusOr<net::ApiKeys> keys = net::ApiKeys::Load(api_key_file, "XLSERVE_GATEWAY_API_KEYS", api_key);
  if (!keys.ok()) return ReportError("gateway", std::string(keys.status().message()));
  config.api_keys = *keys;
  absl::StatusOr<std::string> upstream_key = net::LoadClientKey(upstream_key_file, "XLSERVE_UPSTREAM_API_KEY");
  if (!upstream_key.ok()) return ReportError("gateway", std::string(upstream_key.status().message()));
  config.upstream.api_key = *upstream_key;
  if (!upstream_tls_ca.empty()) {
    absl::StatusOr<std::string> pem = net::ReadCredentialFile(upstream_tls_ca);
    if (!pem.ok()) return ReportError("gateway", std::string(pem.status().message()));
    config.upstream.tls_ca_pem = *pem;
  }

  const sigset_t signals = BlockTerminationSignals();
  absl::StatusOr<std::unique_ptr<gateway::GatewayServer>> server = gateway::GatewayServer::Start(config);
  if (!server.ok()) return ReportError("gateway", std::string(server.status().message()));
  std::printf("xlserve gateway listening on %s:%d\n", config.host.c_str(), (*server)->port());
  std::fflush(stdout);
  const int signal_number = WaitForTerminationSignal(signals);
  spdlog::info("gateway: received signal {}, stopping", signal_number);
  (*server)->Shutdown();
  return 0;
}

}  // namespace xlserve::cli
