// `xlserve serve`: the gRPC server on a local model, until SIGTERM or SIGINT.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/termination_signals.h"
#include "engine/backend_factory.h"
#include "engine/model/model_weights.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/server.h"
#include "spdlog/spdlog.h"

namespace xlserve::cli {
namespace {

absl::Status Serve(server::ServerConfig config) {
  if (absl::Status st = server::ValidateServerConfig(config); !st.ok()) return st;
  absl::StatusOr<std::shared_ptr<const ModelWeights>> weights = LoadModelWeights(config.model);
  if (!weights.ok()) return weights.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromModelDirectory(config.model);
  if (!tokenizer.ok()) return tokenizer.status();
  if (!*tokenizer) spdlog::warn("{} has no tokenizer.json: requests must send token ids", config.model);
  BackendOptions backend_options;
  backend_options.device = config.device;
  backend_options.state_dtype = config.state_dtype;
  backend_options.num_threads = config.threads;
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(*weights, backend_options);
  if (!backend.ok()) return backend.status();

  const sigset_t signals = BlockTerminationSignals();

  absl::StatusOr<std::unique_ptr<server::Server>> server =
      server::Server::Start(config, *weights, std::move(*backend), std::move(*tokenizer));
  if (!server.ok()) return server.status();
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
  flags.AddString("model", &config.model, "model directory");
  flags.AddString("model-name", &config.model_name, "name reported and matched (default: directory name)");
  flags.AddString("host", &config.host, "address to bind");
  flags.AddInt("port", &config.port, "gRPC port (0: any free port)");
  flags.AddInt("metrics-port", &config.metrics_port, "HTTP port of /metrics and /health (-1: off, 0: any)");
  flags.AddString("device", &config.device, "backend: auto (cuda when a GPU is present), cpu or cuda");
  flags.AddString("state-dtype", &config.state_dtype, "recurrent state storage: f32, or bf16 (CUDA only)");
  flags.AddInt("threads", &config.threads, "CPU backend threads; 0: one per core");
  flags.AddInt("max-num-seqs", &config.max_num_seqs, "state slots: sequences decoding at once");
  flags.AddInt("max-queue", &config.max_queue, "waiting requests before RESOURCE_EXHAUSTED");
  flags.AddInt("max-prompt-tokens", &config.max_prompt_tokens, "longest prompt accepted");
  flags.AddInt("max-tokens", &config.max_tokens, "largest max_tokens accepted");
  flags.AddInt("default-max-tokens", &config.default_max_tokens, "max_tokens of requests that give none");
  flags.AddInt("max-n", &config.max_n, "largest n accepted");
  flags.AddInt("max-message-bytes", &config.max_message_bytes, "largest gRPC message");
  flags.AddInt("step-token-budget", &config.step_token_budget,
               "tokens per step: decode rows first, prefill chunks take the rest");
  flags.AddDouble("request-timeout", &config.request_timeout_s, "seconds before a request without a deadline ends");
  flags.AddDouble("shutdown-grace", &config.shutdown_grace_s,
                  "seconds running streams may finish after SIGTERM before they are cancelled");
  flags.AddInt("max-sessions", &config.max_sessions, "sessions kept (0: sessions off)");
  flags.AddDouble("session-ttl", &config.session_ttl_s, "seconds an idle session is kept");
  int prefix_cache_mb = static_cast<int>(config.prefix_cache_mb);
  flags.AddInt("prefix-cache-mb", &prefix_cache_mb, "host memory for cached prefix states (0: off)");
  flags.AddInt("prefix-cache-block", &config.prefix_cache_block, "prompt tokens between prefix-cache snapshots");
  flags.AddString("speculation", &config.speculation, "default speculation mode: off, on or auto");
  flags.AddInt("num-draft", &config.num_draft, "default drafts per step");
  flags.AddString("api-key-file", &config.api_key_file,
                  "file of API keys (one per line; also $XLSERVE_API_KEYS): calls need authorization: Bearer KEY");
  flags.AddString("tls-cert", &config.tls_cert_file, "PEM certificate chain: serve gRPC over TLS");
  flags.AddString("tls-key", &config.tls_key_file, "PEM private key of --tls-cert");
  flags.AddString("tls-client-ca", &config.tls_client_ca_file, "PEM roots: require client certificates");
  flags.AddBool("reflection", &config.reflection, "serve gRPC reflection (--reflection=false: off)");
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("serve", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  config.prefix_cache_mb = prefix_cache_mb;
  if (absl::Status st = Serve(config); !st.ok()) return ReportError("serve", std::string(st.message()));
  return 0;
}

}  // namespace xlserve::cli
