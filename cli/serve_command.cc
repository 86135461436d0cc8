// `xlserve serve`: the gRPC server on a local model, until SIGTERM or SIGINT.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>
#include <type_traits>
#include <variant>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/termination_signals.h"
#include "engine/model/model_weights.h"
#include "engine/tokenizer/tokenizer.h"
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
  t = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(*weights, backend_options);
  if (!backend.ok()) return backend.status();
  spdlog::info("start-up: {} backend ready (weights in place, precision {}) in {:.2f} s", (*backend)->name(),
               PrecisionName((*backend)->precision()), seconds(t));

  const sigset_t signals = BlockTerminationSignals();

  absl::StatusOr<std::unique_ptr<server::Server>> server =
      server::Server::Start(config, *weights, std::move(*backend), std::move(*tokenizer));
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

}  // namespace

int RunServe(const std::vector<std::string>& args) {
  server::ServerConfig config;
  std::string config_file;
  // The config file is applied first, then flags override it: find it before parsing the rest.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) config_file = args[i + 1];
    if (args[i].rfind("--config=", 0) == 0) config_file = args[i].substr(9);
  }
  if (!config_file.empty()) {
    if (absl::Status st = server::LoadServerConfigFile(config_file, &config); !st.ok()) {
      return ReportError("serve", std::string(st.message()));
    }
  }
  FlagSet flags("xlserve serve", "[--config FILE] [--model DIR] [--host H --port P] [flags]",
                "Serves a model over gRPC (xlserve.v1.XlServe, grpc.health.v1, reflection) with\n"
                "continuous batching, and Prometheus metrics over HTTP. Flags override --config.\n"
                "Stops on SIGTERM/SIGINT: no new requests, in-flight streams end, exit 0.");
  std::string ignored_config;
  flags.AddString("config", &ignored_config, "JSON file with any of the settings below (configs/server.json)");
  // Every setting is a flag: --key with '-' for '_' (server/server_config.h).
  for (const server::ServerSetting& setting : server::ServerSettings()) {
    const std::string name = server::FlagName(setting.key);
    const std::string help(setting.help);
    std::visit(
        [&](auto member) {
          auto* value = &(config.*member);
          using T = std::remove_pointer_t<decltype(value)>;
          if constexpr (std::is_same_v<T, std::string>) {
            flags.AddString(name, value, help);
          } else if constexpr (std::is_same_v<T, int>) {
            flags.AddInt(name, value, help);
          } else if constexpr (std::is_same_v<T, double>) {
            flags.AddDouble(name, value, help);
          } else {
            flags.AddBool(name, value, help);
          }
        },
        setting.field);
  }
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("serve", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (absl::Status st = Serve(config); !st.ok()) return ReportError("serve", std::string(st.message()));
  return 0;
}

}  // namespace xlserve::cli
