#include "gateway/gateway_server.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <thread>

#include "net/http_listener.h"
#include "net/prometheus_text.h"
#include "spdlog/spdlog.h"

namespace xlserve::gateway {
namespace {

using nlohmann::json;

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// "application/json", any case, with or without parameters such as a charset. Browsers may
// send text/plain and form types across origins without asking: those are refused.
bool IsJson(const std::string& content_type) {
  std::string media = content_type.substr(0, content_type.find(';'));
  media.erase(std::remove_if(media.begin(), media.end(), [](unsigned char c) { return std::isspace(c); }), media.end());
  std::transform(media.begin(), media.end(), media.begin(), [](unsigned char c) { return std::tolower(c); });
  return media == "application/json";
}

// Each upstream's metrics with an upstream="HOST:PORT" label on every sample, so the series of
// several replicas stay apart. An upstream that does not answer within a second is left out.
void AppendUpstreamMetrics(const std::vector<std::string>& upstreams, net::PrometheusText* out) {
  for (const std::string& address : upstreams) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) continue;
    httplib::Client client(address.substr(0, colon), std::atoi(address.c_str() + colon + 1));
    client.set_connection_timeout(std::chrono::seconds(1));
    client.set_read_timeout(std::chrono::seconds(1));
    auto res = client.Get("/metrics");
    if (res && res->status == 200) out->AppendRelabelled(res->body, "upstream", address);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<GatewayServer>> GatewayServer::Start(const GatewayConfig& config) {
  if (config.upstreams.empty()) return absl::InvalidArgumentError("at least one --upstream is needed");
  std::unique_ptr<GatewayServer> g(new GatewayServer());
  g->config_ = config;
  g->max_body_bytes_ = static_cast<size_t>(config.max_body_mb * (1 << 20));
  absl::StatusOr<ChatTemplate> tmpl = LoadChatTemplate(config.model_dir);
  if (!tmpl.ok()) return tmpl.status();
  g->template_ = *tmpl;
  UpstreamOptions upstream;
  upstream.api_key = config.upstream_api_key;
  upstream.tls_ca_pem = config.upstream_tls_ca_pem;
  upstream.max_in_flight = config.max_in_flight_per_upstream;
  g->pool_ = std::make_unique<UpstreamPool>(config.upstreams, upstream);
  g->calls_ = std::make_unique<ActiveCalls>();

  net::HttpLimits limits;
  limits.workers = std::max(4, config.threads);
  limits.max_connections = std::max(limits.workers, config.max_connections);
  limits.header_timeout = Millis(config.header_timeout_s);
  limits.idle_timeout = Millis(config.idle_timeout_s);
  limits.body_timeout = Millis(config.body_timeout_s);
  g->http_ = std::make_unique<net::HttpListener>(limits);
  g->http_->set_payload_max_length(g->max_body_bytes_);
  GatewayServer* self = g.get();
  g->http_->set_pre_routing_handler([self](const httplib::Request& req, httplib::Response& res) {
    return self->Admit(req, res) ? httplib::Server::HandlerResponse::Unhandled : httplib::Server::HandlerResponse::Handled;
  });
  g->http_->Post("/v1/completions", [self](const httplib::Request& req, httplib::Response& res,
                                           const httplib::ContentReader& reader) {
    self->HandleCompletion(req, res, reader, false);
  });
  g->http_->Post("/v1/chat/completions", [self](const httplib::Request& req, httplib::Response& res,
                                                const httplib::ContentReader& reader) {
    self->HandleCompletion(req, res, reader, true);
  });
  g->http_->Get("/v1/models", [self](const httplib::Request&, httplib::Response& res) { self->HandleModels(res); });
  g->http_->Get("/health", [self](const httplib::Request&, httplib::Response& res) { self->HandleHealth(res); });
  g->http_->Get("/metrics", [self](const httplib::Request&, httplib::Response& res) { self->HandleMetrics(res); });
  // Liveness only: open to probes without a key, and says nothing about the replicas.
  g->http_->Get("/livez", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  g->http_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int status = res.status;
    res.set_content(ErrorBody(status == 404 ? "no such endpoint" : "bad request", ErrorType(status),
                              std::to_string(status)).dump(),
                    "application/json");
  });

  g->pool_->StartProbing();
  absl::StatusOr<int> port = g->http_->Start(config.host, config.port);
  if (!port.ok()) return port.status();
  g->port_ = *port;
  spdlog::info("gateway on {}:{} -> {} upstream(s){}", config.host, g->port_, config.upstreams.size(),
               config.api_keys.enabled() ? ", API keys required" : "");
  return g;
}

GatewayServer::~GatewayServer() { Shutdown(); }

void GatewayServer::Shutdown() {
  if (shut_down_ || !http_) return;
  shut_down_ = true;
  draining_ = true;
  const auto give_up = std::chrono::steady_clock::now() + Millis(config_.shutdown_grace_s);
  while (calls_->size() > 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (int left = calls_->size(); left > 0) spdlog::info("gateway: cancelling {} request(s) still running", left);
  calls_->CancelAll();
  http_->Stop();
}

bool GatewayServer::Admit(const httplib::Request& req, httplib::Response& res) {
  if (req.path == "/livez") return true;
  // Every refusal here leaves the body unread: the connection closes after the answer.
  auto refuse = [&](int status, const std::string& message, int retry_after_s = 0) {
    SendError(res, status, message, retry_after_s);
    net::HttpListener::CloseAfterResponse(res);
    return false;
  };
  if (draining_) return refuse(503, "the gateway is shutting down");
  if (config_.api_keys.enabled() && !config_.api_keys.Match(req.get_header_value("Authorization"))) {
    res.set_header("WWW-Authenticate", "Bearer");
    return refuse(401, "invalid or missing API key (Authorization: Bearer ...)");
  }
  if (req.method == "GET") return true;
  if (req.method != "POST") return refuse(405, "method not allowed");
  if (req.path != "/v1/completions" && req.path != "/v1/chat/completions") return refuse(404, "no such endpoint");
  if (!IsJson(req.get_header_value("Content-Type"))) {
    return refuse(415, "the request body must be JSON (Content-Type: application/json)");
  }
  if (req.has_header("Content-Length")) {
    const std::string length = req.get_header_value("Content-Length");
    uint64_t bytes = 0;
    const auto [end, ec] = std::from_chars(length.data(), length.data() + length.size(), bytes);
    if (ec != std::errc() || end != length.data() + length.size()) return refuse(400, "bad Content-Length");
    if (bytes > max_body_bytes_) return refuse(413, "request body too large");
  }
  return true;
}

void GatewayServer::SendError(httplib::Response& res, int http, const std::string& message, int retry_after_s) {
  ++errors_total_;
  if (http == 429) ++rejected_total_;
  res.status = http;
  if (retry_after_s > 0) res.set_header("Retry-After", std::to_string(retry_after_s));
  res.set_content(ErrorBody(message, ErrorType(http), std::to_string(http)).dump(), "application/json");
}

void GatewayServer::HandleModels(httplib::Response& res) {
  for (int i = 0; i < pool_->size(); ++i) {
    std::unique_ptr<grpc::ClientContext> context = pool_->NewContext(std::chrono::system_clock::now() +
                                                                     std::chrono::seconds(5));
    v1::ModelInfo info;
    if (pool_->stub(i)->GetModelInfo(context.get(), v1::GetModelInfoRequest(), &info).ok()) {
      json model = {{"id", info.name()}, {"object", "model"}, {"created", 0}, {"owned_by", "xlserve"}};
      res.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump(), "application/json");
      return;
    }
  }
  SendError(res, 503, "no upstream replica is available", 1);
}

// Ready when a replica can take requests: its last health probe said SERVING (a draining
// server does not) and it has not failed a call in the last few seconds.
void GatewayServer::HandleHealth(httplib::Response& res) {
  const int usable = pool_->usable();
  const char* status = draining_ ? "draining" : usable > 0 ? "ok" : "unavailable";
  res.status = !draining_ && usable > 0 ? 200 : 503;
  res.set_content(json{{"status", status}, {"upstreams_up", usable}, {"upstreams", pool_->size()}}.dump(),
                  "application/json");
}

void GatewayServer::HandleMetrics(httplib::Response& res) {
  net::PrometheusText out;
  out.Counter("xlserve_gateway_requests_total", "Completion requests received.", requests_total_.load());
  out.Counter("xlserve_gateway_errors_total", "Requests answered with an error.", errors_total_.load());
  out.Counter("xlserve_gateway_rejected_total", "Requests refused with 429 (no replica had room).",
              rejected_total_.load());
  out.Counter("xlserve_gateway_streams_cancelled_total", "Requests whose client went away.",
              streams_cancelled_total_.load());
  out.Gauge("xlserve_gateway_requests_in_flight", "Requests being served.", calls_->size());
  out.Gauge("xlserve_gateway_upstreams_usable", "Replicas that can take requests.", pool_->usable());
  out.Gauge("xlserve_gateway_open_connections", "HTTP connections open.", http_->open_connections());
  AppendUpstreamMetrics(config_.upstream_metrics, &out);
  res.set_content(out.text(), net::kPrometheusContentType);
}

}  // namespace xlserve::gateway
