// GatewayServer: OpenAI's REST API (/v1/completions, /v1/chat/completions with SSE streaming,
// /v1/models, /health, /metrics, and /livez for liveness probes) in front of one or more
// xlserve gRPC replicas.
//
// Every endpoint but /livez needs an API key when keys are configured. Requests are checked
// before their bodies are read (key, JSON content type, declared size), bodies are bounded
// while they are read (chunked ones too), and a request is admitted only while a replica has a
// free slot for it: otherwise 429 with Retry-After. A client that hangs up cancels its request
// upstream. Shutdown lets running requests finish for a grace period, then cancels them.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/active_calls.h"
#include "gateway/openai_api.h"
#include "gateway/upstream_pool.h"
#include "net/api_keys.h"

namespace httplib {
class ContentReader;
struct Request;
struct Response;
}  // namespace httplib

namespace xlserve::net {
class HttpListener;
}

namespace xlserve::gateway {

class UpstreamCall;

struct GatewayConfig {
  std::vector<std::string> upstreams = {"127.0.0.1:50051"};
  // HOST:PORT of upstream /metrics endpoints whose series /metrics re-exports, labelled upstream="...".
  std::vector<std::string> upstream_metrics;
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port
  net::ApiKeys api_keys;     // none: no authentication
  UpstreamOptions upstream;  // credentials, TLS and admission limits towards the replicas
  double request_timeout_s = 600;
  size_t max_body_bytes = 4 << 20;
  std::string model_dir;  // where chat_template.json may live
  int threads = 64;       // requests served at once; each streaming response holds one
  int max_connections = 512;
  double header_timeout_s = 10;  // a started request's headers must arrive within this
  double idle_timeout_s = 15;    // a keep-alive connection may wait this long for its next request
  double body_timeout_s = 30;    // a request body must arrive within this
  double shutdown_grace_s = 5;   // on Shutdown(), running requests may finish this long
};

class GatewayServer {
 public:
  static absl::StatusOr<std::unique_ptr<GatewayServer>> Start(const GatewayConfig& config);
  ~GatewayServer();
  int port() const { return port_; }
  // Refuses new requests (503, /health not ready), lets running ones finish for
  // shutdown_grace_s, cancels the rest upstream and closes the port. Idempotent.
  void Shutdown();

 private:
  GatewayServer() = default;
  // Runs before a request's body is read: key, method, path, content type, declared size.
  bool Admit(const httplib::Request& req, httplib::Response& res);
  void HandleCompletion(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                        bool chat);
  void RespondWhole(CompletionCall& spec, std::shared_ptr<UpstreamCall> call, httplib::Response& res);
  void RespondStream(std::shared_ptr<CompletionCall> spec, std::shared_ptr<UpstreamCall> call,
                     httplib::Response& res);
  void HandleModels(httplib::Response& res);
  void HandleHealth(httplib::Response& res);
  void HandleMetrics(httplib::Response& res);
  void SendError(httplib::Response& res, int http, const std::string& message, int retry_after_s = 0);

  GatewayConfig config_;
  ChatTemplate template_;
  std::unique_ptr<UpstreamPool> pool_;
  std::unique_ptr<ActiveCalls> calls_;
  std::unique_ptr<net::HttpListener> http_;
  int port_ = 0;
  bool shut_down_ = false;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> requests_total_{0};
  std::atomic<int64_t> errors_total_{0};
  std::atomic<int64_t> rejected_total_{0};
  std::atomic<int64_t> streams_cancelled_total_{0};
};

}  // namespace xlserve::gateway
