// `xlserve serve`: the gRPC server on a local model, until SIGTERM or SIGINT.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/termination_signals.h"
#include "engine/model/model_weights.h"
#include "engine/tokenizer/tokenizer.h"
#include "runtime/accelerators.h"
#include "runtime/backend_factory.h"
#include "server/server.h"
#include "spdlog/spdlog.h"

namespace xlserve::cli {
namespace {

absl::Status Serve(server::ServerConfig config) {
  if (absl::Status st = server::ValidateServerConfig(config); !st.ok()) return st;
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [](std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
  };
  auto t = std::chrono::steady_clock::now();
  spdlog::info("start-up: loading {}", config.model);
  absl::StatusOr<std::shared_ptr<const ModelWeights>> weights = LoadModelWeights(config.model);
  if (!weights.ok()) return weights.status();
  spdlog::info("start-up: checkpoint mapped in {:.2f} s", seconds(t));
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromModelDirectory(config.model);
  if (!tokenizer.ok()) return tokenizer.status();
  if (!*tokenizer) spdlog::warn("{} has no tokenizer.json: requests must send token ids", config.model);
  BackendOptions backend_options;
  backend_options.device = config.device;
  backend_options.state_dtype = config.state_dtype;
  backend_options.precision = config.precision;
  backend_options.num_threads = config.threads;
  backend_options.tensor_parallel = config.tensor_parallel;
  t = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(*weights, backend_options);
  if (!backend.ok()) return backend.status();
  spdlog::info("start-up: {} backend ready (weights in place, precision {}) in {:.2f} s", (*backend)->name(),
               PrecisionName((*backend)->precision()), seconds(t));

  const sigset_t signals = BlockTerminationSignals();

  std::function<int64_t()> graph_builds = runtime::GraphBuildCounter(backend->get());
  absl::StatusOr<std::unique_ptr<server::Server>> server = server::Server::Start(
      config, *weights, std::move(*backend), std::move(*tokenizer), std::move(graph_builds));
  if (!server.ok()) return server.status();
  spdlog::info("start-up: serving after {:.2f} s", seconds(start));
  // Tests and scripts read this line to find the ports when they asked for port 0.
  std::printf("xlserve listening on %s:%d metrics %d\n", config.host.c_str(), (*server)->port(),
              (*server)->metrics_port());
  std::fflush(stdout);
  const int signal_number = WaitForTerminationSignal(signals);
  spdlog::info("received signal {}", signal_number);
  (*server)->Shutdown();
  return absl::OkStatus();
}

// The one flag that is not a server setting: where the others may come from.
struct ServeCommandLine {
  std::string config;
};

const settings::SettingsTable<ServeCommandLine>& ServeCommandLineSettings() {
  static const settings::SettingsTable<ServeCommandLine> table = {
      {"config", &ServeCommandLine::config, "JSON file with any of the settings below (configs/server.json)"},
  };
  return table;
}

}  // namespace

int RunServe(const std::vector<std::string>& args) {
  server::ServerConfig config;
  // The config file is applied first, then flags override it: find it before parsing the rest.
  ServeCommandLine command_line;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) command_line.config = args[i + 1];
    if (args[i].rfind("--config=", 0) == 0) command_line.config = args[i].substr(9);
  }
  if (!command_line.config.empty()) {
    if (absl::Status st = settings::ApplyJsonFile(server::ServerSettings(), command_line.config, &config); !st.ok()) {
      return ReportError("serve", std::string(st.message()));
    }
  }
  FlagSet flags("xlserve serve", "[--config FILE] [--model DIR] [--host H --port P] [flags]",
                "Serves a model over gRPC (xlserve.v1.XlServe, grpc.health.v1, reflection) with\n"
                "continuous batching, and Prometheus metrics over HTTP. Flags override --config.\n"
                "Stops on SIGTERM/SIGINT: no new requests, in-flight streams end, exit 0.");
  flags.Add(ServeCommandLineSettings(), &command_line);
  flags.Add(server::ServerSettings(), &config);
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("serve", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (absl::Status st = Serve(config); !st.ok()) return ReportError("serve", std::string(st.message()));
  return 0;
}

}  // namespace xlserve::cli
