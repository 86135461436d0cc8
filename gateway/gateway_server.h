// GatewayServer: OpenAI's REST API (/v1/completions, /v1/chat/completions with SSE streaming,
// /v1/models, /health, /metrics) in front of one or more xlserve gRPC replicas.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/openai_api.h"
#include "gateway/upstream_pool.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace xlserve::gateway {

struct GatewayConfig {
  std::vector<std::string> upstreams = {"127.0.0.1:50051"};
  // HOST:PORT of upstream /metrics endpoints whose series /metrics re-exports, labelled upstream="...".
  std::vector<std::string> upstream_metrics;
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port
  std::string api_key;  // empty: no authentication
  double request_timeout_s = 600;
  size_t max_body_bytes = 4 << 20;
  std::string model_dir;  // where chat_template.json may live
  int threads = 64;       // concurrent HTTP requests
};

class GatewayServer {
 public:
  static absl::StatusOr<std::unique_ptr<GatewayServer>> Start(const GatewayConfig& config);
  ~GatewayServer();
  int port() const { return port_; }
  void Shutdown();
  void Wait();

 private:
  GatewayServer() = default;
  void HandleCompletion(const httplib::Request& req, httplib::Response& res, bool chat);
  void HandleModels(httplib::Response& res);
  void HandleHealth(httplib::Response& res);
  bool Authorized(const httplib::Request& req, httplib::Response& res);
  void SendError(httplib::Response& res, int http, const std::string& message);

  GatewayConfig config_;
  ChatTemplate template_;
  std::unique_ptr<UpstreamPool> pool_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int64_t> requests_total_{0};
  std::atomic<int64_t> errors_total_{0};
  std::atomic<int64_t> streams_cancelled_total_{0};
  std::atomic<int64_t> in_flight_{0};
};

}  // namespace xlserve::gateway
