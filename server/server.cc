#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>

#include <filesystem>

#include "net/api_keys.h"
#include "net/http_listener.h"
#include "net/prometheus_text.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/xlserve_service.h"
#include "spdlog/spdlog.h"

namespace xlserve::server {
namespace {

// Plaintext unless a certificate is configured; with client roots, clients must present a
// certificate they signed.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerConfig& config) {
  if (config.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options;
  absl::StatusOr<std::string> cert = net::ReadCredentialFile(config.tls_cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = net::ReadCredentialFile(config.tls_key_file);
  if (!key.ok()) return key.status();
  options.pem_key_cert_pairs.push_back({*key, *cert});
  if (!config.tls_client_ca_file.empty()) {
    absl::StatusOr<std::string> roots = net::ReadCredentialFile(config.tls_client_ca_file);
    if (!roots.ok()) return roots.status();
    options.pem_root_certs = *roots;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

// gRPC's reflection library registers its builder plugin as soon as it is loaded, for every
// builder; this option takes it out again.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    std::erase_if(*plugins, [](const std::unique_ptr<grpc::ServerBuilderPlugin>& plugin) {
      return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(plugin.get()) != nullptr;
    });
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerConfig& config_in,
                                                      std::shared_ptr<const ModelWeights> weights,
                                                      std::unique_ptr<Backend> backend,
                                                      std::unique_ptr<Tokenizer> tokenizer,
                                                      std::function<int64_t()> graph_builds) {
  ServerConfig config = config_in;
  if (absl::Status st = ValidateServerConfig(config); !st.ok()) return st;
  if (config.model_name.empty()) config.model_name = std::filesystem::path(config.model).filename().string();
  std::unique_ptr<Server> s(new Server());
  s->config_ = config;
  s->weights_ = std::move(weights);
  s->backend_ = std::move(backend);
  s->tokenizer_ = std::move(tokenizer);
  s->metrics_ = std::make_unique<Metrics>();

  SchedulerOptions options;
  options.max_num_seqs = config.max_num_seqs;
  options.max_queue = config.max_queue;
  options.step_token_budget = config.step_token_budget;
  options.prefill_chunk_while_decoding = config.prefill_chunk_while_decoding;
  options.state_cache_device_bytes = config.state_cache_gpu_mb < 0 ? -1 : int64_t{config.state_cache_gpu_mb} << 20;
  options.state_cache_host_bytes = config.state_cache_host_mb < 0 ? -1 : int64_t{config.state_cache_host_mb} << 20;
  options.prefix_cache_min_tokens = config.prefix_cache_min_tokens;
  options.max_sessions = config.max_sessions;
  options.session_ttl = std::chrono::seconds(static_cast<int64_t>(config.session_ttl_s));
  options.num_draft = config.num_draft;
  options.warm_up = config.warm_up;
  options.graph_builds = std::move(graph_builds);
  const ModelConfig& model = s->weights_->config;
  s->scheduler_ = std::make_unique<Scheduler>(s->backend_.get(), s->tokenizer_.get(), model, options, s->metrics_.get());
  if (absl::Status st = s->scheduler_->Start(); !st.ok()) return st;
  absl::StatusOr<net::ApiKeys> keys = net::ApiKeys::Load(config.api_key_file, "XLSERVE_API_KEYS", "");
  if (!keys.ok()) return keys.status();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = Credentials(config);
  if (!credentials.ok()) return credentials.status();
  s->service_ = std::make_unique<XlServeService>(s->scheduler_.get(), s->tokenizer_.get(), model, config,
                                                 *s->backend_, *keys);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!config.reflection) builder.SetOption(std::make_unique<WithoutReflection>());
  const std::string address = config.host + ":" + std::to_string(config.port);
  builder.AddListeningPort(address, *credentials, &s->port_);
  // gRPC sets SO_REUSEPORT by default: a second server on a taken port would start and get
  // every other connection. Without it, binding a taken port fails here.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(2 * config.max_message_bytes);
  builder.SetMaxSendMessageSize(config.max_message_bytes);
  builder.RegisterService(s->service_.get());
  s->grpc_ = builder.BuildAndStart();
  if (!s->grpc_ || s->port_ == 0) {
    return absl::UnavailableError("cannot listen on " + address + " (address in use, not local, or not an address)");
  }

  if (config.metrics_port >= 0) {
    // Scrapes and probes are small and few: a handful of workers, and timeouts so that slow
    // clients cannot hold them (net/http_listener.h).
    net::HttpLimits limits;
    limits.workers = 4;
    limits.max_connections = 64;
    limits.header_timeout = std::chrono::seconds(5);
    limits.idle_timeout = std::chrono::seconds(10);
    limits.body_timeout = std::chrono::seconds(5);
    limits.write_timeout = std::chrono::seconds(10);
    s->http_ = std::make_unique<net::HttpListener>(limits);
    Metrics* metrics = s->metrics_.get();
    s->http_->Get("/metrics", [metrics](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics->Render(), net::kPrometheusContentType);
    });
    const std::atomic<bool>* draining = &s->draining_;
    s->http_->Get("/health", [draining](const httplib::Request&, httplib::Response& res) {
      if (draining->load()) {
        res.status = 503;
        res.set_content("shutting down\n", "text/plain");
        return;
      }
      res.set_content("ok\n", "text/plain");
    });
    absl::StatusOr<int> bound = s->http_->Start(config.host, config.metrics_port);
    if (!bound.ok()) {
      return absl::UnavailableError("cannot listen for metrics on " + config.host + ":" +
                                    std::to_string(config.metrics_port) + " (address in use or not local)");
    }
    s->metrics_port_ = *bound;
  }
  spdlog::info("serving {} on {}:{} ({} slots, device {}), metrics on port {}{}{}", config.model_name, config.host,
               s->port_, config.max_num_seqs, s->backend_->name(), s->metrics_port_,
               config.tls_cert_file.empty() ? "" : ", TLS", keys->enabled() ? ", API keys required" : "");
  return s;
}

void Server::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  draining_ = true;
  spdlog::info("shutting down: no new requests; running streams have {} s to finish", config_.shutdown_grace_s);
  // A Start() that failed part-way leaves later members unset.
  if (grpc_) {
    if (grpc::HealthCheckServiceInterface* health = grpc_->GetHealthCheckService()) health->SetServingStatus(false);
  }
  if (scheduler_) {
    scheduler_->Shutdown(std::chrono::milliseconds(static_cast<int64_t>(config_.shutdown_grace_s * 1000)));
  }
  if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (http_) http_->Stop();
}

void Server::Wait() {
  if (grpc_) grpc_->Wait();
}

Server::~Server() { Shutdown(); }

}  // namespace xlserve::server
