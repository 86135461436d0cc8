// `xlserve gateway`: the OpenAI-compatible REST gateway in front of xlserve gRPC replicas.
#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/termination_signals.h"
#include "gateway/gateway_server.h"
#include "spdlog/spdlog.h"

namespace xlserve::cli {

int RunGateway(const std::vector<std::string>& args) {
  gateway::GatewayConfig config;
  FlagSet flags("xlserve gateway", "[--upstream HOST:PORT ...] [--host H --port P] [flags]",
                "OpenAI-compatible REST API (/v1/completions, /v1/chat/completions with SSE,\n"
                "/v1/models, /health, /metrics, /livez) over xlserve gRPC replicas: least-loaded\n"
                "routing, session affinity (session_id, else user), failover. --upstream repeats.");
  flags.Add(gateway::GatewaySettings(), &config);
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("gateway", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (absl::Status st = gateway::LoadGatewayCredentials(&config); !st.ok()) {
    return ReportError("gateway", std::string(st.message()));
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
