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
#include "gateway/gateway_config.h"
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

class GatewayServer {
 public:
  // `config` with its credentials loaded (LoadGatewayCredentials).
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
  size_t max_body_bytes_ = 0;
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
