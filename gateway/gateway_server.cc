#include "gateway/gateway_server.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <chrono>
#include <set>
#include <sstream>

#include "spdlog/spdlog.h"

namespace xlserve::gateway {
namespace {

using nlohmann::json;

int HttpStatus(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::FAILED_PRECONDITION: return 400;
    case grpc::StatusCode::NOT_FOUND: return 404;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return 429;
    case grpc::StatusCode::UNAVAILABLE: return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 504;
    case grpc::StatusCode::UNAUTHENTICATED: return 401;
    default: return 500;
  }
}

std::string ErrorType(int http) {
  switch (http) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    default: return "server_error";
  }
}

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One upstream Generate stream with the replica it runs on.
struct UpstreamCall {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  UpstreamPool::Lease lease;
  v1::GenerateResponse first;
  bool has_first = false;
};

json LogprobsJson(const v1::GenerateResponse& m, bool chat) {
  if (m.logprobs_size() == 0) return nullptr;
  if (chat) {
    json content = json::array();
    for (const auto& lp : m.logprobs()) {
      json top = json::array();
      for (const auto& t : lp.top_logprobs()) top.push_back({{"token", std::to_string(t.token_id())}, {"logprob", t.logprob()}});
      content.push_back({{"token", std::to_string(lp.token_id())}, {"logprob", lp.logprob()}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array();
  for (const auto& lp : m.logprobs()) {
    tokens.push_back(std::to_string(lp.token_id()));
    token_logprobs.push_back(lp.logprob());
    json alts = json::object();
    for (const auto& t : lp.top_logprobs()) alts[std::to_string(t.token_id())] = t.logprob();
    top.push_back(alts);
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}};
}

json UsageJson(int prompt, int completion, int cached) {
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

// Each upstream's metrics with an upstream="HOST:PORT" label on every sample, so the series of
// several replicas stay apart; HELP/TYPE lines appear once per metric. An upstream that does
// not answer within a second is left out.
std::string ForwardedMetrics(const std::vector<std::string>& upstreams) {
  std::string out;
  std::set<std::string> described;
  for (const std::string& address : upstreams) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) continue;
    httplib::Client client(address.substr(0, colon), std::atoi(address.c_str() + colon + 1));
    client.set_connection_timeout(std::chrono::seconds(1));
    client.set_read_timeout(std::chrono::seconds(1));
    auto res = client.Get("/metrics");
    if (!res || res->status != 200) continue;
    std::istringstream lines(res->body);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      if (line[0] == '#') {
        if (described.insert(line).second) out += line + "\n";
        continue;
      }
      const size_t name_end = line.find_first_of("{ ");
      if (name_end == std::string::npos) continue;
      const std::string label = "upstream=\"" + address + "\"";
      if (line[name_end] == '{') {
        out += line.substr(0, name_end + 1) + label + "," + line.substr(name_end + 1) + "\n";
      } else {
        out += line.substr(0, name_end) + "{" + label + "}" + line.substr(name_end) + "\n";
      }
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GatewayServer>> GatewayServer::Start(const GatewayConfig& config) {
  if (config.upstreams.empty()) return absl::InvalidArgumentError("at least one --upstream is needed");
  std::unique_ptr<GatewayServer> g(new GatewayServer());
  g->config_ = config;
  absl::StatusOr<ChatTemplate> tmpl = LoadChatTemplate(config.model_dir);
  if (!tmpl.ok()) return tmpl.status();
  g->template_ = *tmpl;
  g->pool_ = std::make_unique<UpstreamPool>(config.upstreams);
  g->http_ = std::make_unique<httplib::Server>();
  const int threads = std::max(4, config.threads);
  g->http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  g->http_->set_payload_max_length(config.max_body_bytes);
  GatewayServer* self = g.get();
  g->http_->Post("/v1/completions", [self](const httplib::Request& req, httplib::Response& res) {
    self->HandleCompletion(req, res, false);
  });
  g->http_->Post("/v1/chat/completions", [self](const httplib::Request& req, httplib::Response& res) {
    self->HandleCompletion(req, res, true);
  });
  g->http_->Get("/v1/models", [self](const httplib::Request& req, httplib::Response& res) {
    if (self->Authorized(req, res)) self->HandleModels(res);
  });
  g->http_->Get("/health", [self](const httplib::Request&, httplib::Response& res) { self->HandleHealth(res); });
  g->http_->Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
    std::string out;
    auto metric = [&out](const char* name, const char* type, const char* help, int64_t v) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
             std::to_string(v) + "\n";
    };
    metric("xlserve_gateway_requests_total", "counter", "Completion requests received.", self->requests_total_.load());
    metric("xlserve_gateway_errors_total", "counter", "Requests answered with an error.", self->errors_total_.load());
    metric("xlserve_gateway_streams_cancelled_total", "counter", "Streams whose client went away.",
           self->streams_cancelled_total_.load());
    metric("xlserve_gateway_requests_in_flight", "gauge", "Requests being served.", self->in_flight_.load());
    out += ForwardedMetrics(self->config_.upstream_metrics);
    res.set_content(out, "text/plain; version=0.0.4");
  });
  g->http_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 413) {
      res.set_content(ErrorBody("request body too large", "invalid_request_error", "413").dump(), "application/json");
    } else if (res.body.empty()) {
      res.set_content(ErrorBody("no such endpoint", "not_found_error", std::to_string(res.status)).dump(),
                      "application/json");
    }
  });
  if (config.port == 0) {
    g->port_ = g->http_->bind_to_any_port(config.host);
  } else {
    g->port_ = g->http_->bind_to_port(config.host, config.port) ? config.port : -1;
  }
  if (g->port_ <= 0) {
    return absl::UnavailableError("cannot listen on " + config.host + ":" + std::to_string(config.port));
  }
  httplib::Server* http = g->http_.get();
  g->thread_ = std::thread([http] { http->listen_after_bind(); });
  spdlog::info("gateway on {}:{} -> {} upstream(s)", config.host, g->port_, config.upstreams.size());
  return g;
}

GatewayServer::~GatewayServer() { Shutdown(); }

void GatewayServer::Shutdown() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

void GatewayServer::Wait() {
  if (thread_.joinable()) thread_.join();
}

bool GatewayServer::Authorized(const httplib::Request& req, httplib::Response& res) {
  if (config_.api_key.empty()) return true;
  if (req.get_header_value("Authorization") == "Bearer " + config_.api_key) return true;
  SendError(res, 401, "invalid or missing API key (Authorization: Bearer ...)");
  return false;
}

void GatewayServer::SendError(httplib::Response& res, int http, const std::string& message) {
  ++errors_total_;
  res.status = http;
  res.set_content(ErrorBody(message, ErrorType(http), std::to_string(http)).dump(), "application/json");
}

void GatewayServer::HandleModels(httplib::Response& res) {
  for (int i = 0; i < pool_->size(); ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ModelInfo info;
    if (pool_->stub(i)->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok()) {
      json model = {{"id", info.name()}, {"object", "model"}, {"created", 0}, {"owned_by", "xlserve"}};
      res.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump(), "application/json");
      return;
    }
  }
  SendError(res, 503, "no upstream xlserve replica answers");
}

void GatewayServer::HandleHealth(httplib::Response& res) {
  int up = 0;
  for (int i = 0; i < pool_->size(); ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ModelInfo info;
    if (pool_->stub(i)->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok()) ++up;
  }
  res.status = up > 0 ? 200 : 503;
  res.set_content(json{{"status", up > 0 ? "ok" : "unavailable"}, {"upstreams_up", up}, {"upstreams", pool_->size()}}.dump(),
                  "application/json");
}

void GatewayServer::HandleCompletion(const httplib::Request& req, httplib::Response& res, bool chat) {
  ++requests_total_;
  if (!Authorized(req, res)) return;
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) return SendError(res, 400, "the request body is not valid JSON");
  absl::StatusOr<CompletionCall> parsed = ParseCompletionCall(body, chat, template_);
  if (!parsed.ok()) return SendError(res, 400, std::string(parsed.status().message()));
  auto call_spec = std::make_shared<CompletionCall>(std::move(*parsed));

  // Open the stream and read its first message before answering, so that errors the server
  // reports up front (bad fields, unknown model, full queue) become HTTP statuses. A replica
  // that does not answer is skipped for the next one.
  auto call = std::make_shared<UpstreamCall>();
  grpc::Status status;
  for (int attempt = 0; attempt < pool_->size(); ++attempt) {
    call->lease = pool_->Acquire(call_spec->affinity_key);
    if (call->lease.index < 0) break;
    call->context = std::make_unique<grpc::ClientContext>();
    call->context->set_deadline(std::chrono::system_clock::now() +
                                std::chrono::milliseconds(static_cast<int64_t>(config_.request_timeout_s * 1000)));
    call->reader = call->lease.stub->Generate(call->context.get(), call_spec->request);
    call->has_first = call->reader->Read(&call->first);
    if (call->has_first) break;
    status = call->reader->Finish();
    const bool down = status.error_code() == grpc::StatusCode::UNAVAILABLE;
    pool_->Release(call->lease, down);
    call->lease = {};
    if (!down) break;
  }
  if (!call->has_first) {
    if (call->lease.index < 0 && status.ok()) status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "no upstream replica is up");
    return SendError(res, HttpStatus(status.error_code()), status.error_message());
  }

  ++in_flight_;
  const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + call->first.request_id();
  const std::string object = chat ? "chat.completion" : "text_completion";
  const std::string model = call_spec->model.empty() ? "xlserve" : call_spec->model;
  const int64_t created = Now();

  if (!call_spec->stream) {
    const int n = std::max(1, call_spec->request.n());
    std::vector<std::string> text(n);
    std::vector<json> finish(n, nullptr);
    std::vector<json> logprobs(n, nullptr);
    int prompt_tokens = 0, completion_tokens = 0, cached = 0;
    v1::GenerateResponse m = call->first;
    do {
      const int i = m.index();
      if (i < 0 || i >= n) continue;
      text[i] += m.text();
      if (call_spec->logprobs) {
        json lp = LogprobsJson(m, chat);
        if (!lp.is_null()) {
          if (logprobs[i].is_null()) {
            logprobs[i] = lp;
          } else {
            for (auto& [k, v] : lp.items()) {
              for (auto& x : v) logprobs[i][k].push_back(x);
            }
          }
        }
      }
      if (!m.finish_reason().empty()) {
        finish[i] = FinishReason(m.finish_reason());
        prompt_tokens = m.usage().prompt_tokens();
        cached = m.usage().cached_prompt_tokens();
        completion_tokens += m.usage().completion_tokens();
      }
    } while (call->reader->Read(&m));
    const grpc::Status st = call->reader->Finish();
    pool_->Release(call->lease, st.error_code() == grpc::StatusCode::UNAVAILABLE);
    --in_flight_;
    if (!st.ok()) return SendError(res, HttpStatus(st.error_code()), st.error_message());
    json choices = json::array();
    for (int i = 0; i < n; ++i) {
      json c = {{"index", i}, {"finish_reason", finish[i]}, {"logprobs", logprobs[i]}};
      if (chat) {
        c["message"] = {{"role", "assistant"}, {"content", text[i]}};
      } else {
        c["text"] = text[i];
      }
      choices.push_back(c);
    }
    res.set_content(json{{"id", id},
                         {"object", object},
                         {"created", created},
                         {"model", model},
                         {"choices", choices},
                         {"usage", UsageJson(prompt_tokens, completion_tokens, cached)}}
                        .dump(-1, ' ', false, json::error_handler_t::replace),
                    "application/json");
    return;
  }

  // Streaming: Server-Sent Events, one chunk per upstream message, then [DONE]. A client that
  // goes away cancels the upstream stream, which frees its slot at the server's next step.
  auto prompt_tokens = std::make_shared<int>(0);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, call, call_spec, id, model, created, chat, prompt_tokens](size_t, httplib::DataSink& sink) {
        const std::string chunk_object = chat ? "chat.completion.chunk" : "text_completion";
        int completion_tokens = 0, cached = 0;
        std::vector<bool> role_sent(std::max(1, call_spec->request.n()), false);
        bool gone = false;
        auto send = [&](const json& j) {
          const std::string line = "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
          if (!gone && !sink.write(line.data(), line.size())) gone = true;
          return !gone;
        };
        v1::GenerateResponse m = call->first;
        do {
          const int i = m.index();
          json choice = {{"index", i}, {"finish_reason", FinishReason(m.finish_reason())}};
          if (call_spec->logprobs) choice["logprobs"] = LogprobsJson(m, chat);
          if (chat) {
            json delta = {{"content", m.text()}};
            if (i >= 0 && i < static_cast<int>(role_sent.size()) && !role_sent[i]) {
              delta["role"] = "assistant";
              role_sent[i] = true;
            }
            choice["delta"] = delta;
          } else {
            choice["text"] = m.text();
          }
          if (!m.finish_reason().empty()) {
            *prompt_tokens = m.usage().prompt_tokens();
            cached = m.usage().cached_prompt_tokens();
            completion_tokens += m.usage().completion_tokens();
          }
          if (!send({{"id", id}, {"object", chunk_object}, {"created", created}, {"model", model},
                     {"choices", json::array({choice})}})) {
            call->context->TryCancel();
            ++streams_cancelled_total_;
            break;
          }
        } while (call->reader->Read(&m));
        const grpc::Status st = call->reader->Finish();
        pool_->Release(call->lease, st.error_code() == grpc::StatusCode::UNAVAILABLE);
        --in_flight_;
        if (!gone && !st.ok()) {
          ++errors_total_;
          const int http = HttpStatus(st.error_code());
          send(ErrorBody(st.error_message(), ErrorType(http), std::to_string(http)));
        }
        if (!gone && call_spec->include_usage) {
          send({{"id", id}, {"object", chunk_object}, {"created", created}, {"model", model},
                {"choices", json::array()}, {"usage", UsageJson(*prompt_tokens, completion_tokens, cached)}});
        }
        if (!gone) {
          static const std::string kDone = "data: [DONE]\n\n";
          sink.write(kDone.data(), kDone.size());
        }
        sink.done();
        return true;
      });
}

}  // namespace xlserve::gateway
