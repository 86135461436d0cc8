// Server: the assembled serving process — scheduler, gRPC service (with the standard health
// service and reflection) and the HTTP /metrics endpoint — around a backend made by the caller.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_weights.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/server_config.h"

namespace grpc {
class Server;
}
namespace xlserve::net {
class HttpListener;
}

namespace xlserve::server {

class Scheduler;
class XlServeService;
struct Metrics;

class Server {
 public:
  // Takes ownership of the backend and tokenizer (may be null). Binds both ports before returning.
  // `graph_builds`: SchedulerOptions::graph_builds.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerConfig& config,
                                                       std::shared_ptr<const ModelWeights> weights,
                                                       std::unique_ptr<Backend> backend,
                                                       std::unique_ptr<Tokenizer> tokenizer,
                                                       std::function<int64_t()> graph_builds = {});
  ~Server();

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  // Reports NOT_SERVING, stops admitting, cancels queued requests, lets running streams finish
  // for config.shutdown_grace_s (then cancels them: finish_reason "cancelled"), closes the ports.
  void Shutdown();
  void Wait();

 private:
  Server() = default;

  ServerConfig config_;
  std::shared_ptr<const ModelWeights> weights_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<XlServeService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<net::HttpListener> http_;
  int port_ = 0;
  int metrics_port_ = -1;
  bool shut_down_ = false;
  std::atomic<bool> draining_{false};  // read by the HTTP /health handler
};

}  // namespace xlserve::server
