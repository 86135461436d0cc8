// GatewayServer's completion endpoints: reading the body within its limit, admission, and the
// whole or streamed (Server-Sent Events) answer built from the upstream Generate stream.
#include <httplib.h>

#include <chrono>

#include "gateway/gateway_server.h"
#include "gateway/upstream_call.h"
#include "net/http_listener.h"
#include "spdlog/spdlog.h"

namespace xlserve::gateway {
namespace {

using nlohmann::json;

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

void GatewayServer::HandleCompletion(const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader& reader, bool chat) {
  ++requests_total_;
  // Read into memory only what the limit allows: a chunked body declares no size up front.
  std::string body;
  bool too_large = false;
  const bool complete = reader([&](const char* data, size_t size) {
    too_large = body.size() + size > max_body_bytes_;
    if (!too_large) body.append(data, size);
    return !too_large;
  });
  if (too_large || !complete) {
    SendError(res, too_large ? 413 : 400, too_large ? "request body too large" : "the request body did not arrive");
    net::HttpListener::CloseAfterResponse(res);
    return;
  }
  const json parsed = json::parse(body, nullptr, false);
  body.clear();
  if (parsed.is_discarded()) return SendError(res, 400, "the request body is not valid JSON");
  absl::StatusOr<CompletionCall> spec = ParseCompletionCall(parsed, chat, template_);
  if (!spec.ok()) return SendError(res, 400, std::string(spec.status().message()));
  if (draining_) return SendError(res, 503, "the gateway is shutting down");
  // A session belongs to the key that opened it: another key naming the same id gets its own.
  if (config_.api_keys.enabled() && !spec->request.session_id().empty()) {
    const std::string tag = config_.api_keys.Match(req.get_header_value("Authorization")).value_or("");
    spec->request.set_session_id(tag + ":" + spec->request.session_id());
    spec->affinity_key = spec->request.session_id();
  }
  // Streams hold their worker: keep a few free to refuse the excess quickly and answer probes.
  constexpr int kReservedWorkers = 4;
  if (calls_->size() >= std::max(1, config_.threads - kReservedWorkers)) {
    return SendError(res, 429, "too many requests in flight; retry later", 1);
  }

  auto call = std::make_shared<UpstreamCall>(pool_.get(), calls_.get());
  const auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(
                                                               static_cast<int64_t>(config_.request_timeout_s * 1000));
  if (std::optional<HttpError> error = call->Open(*spec, deadline, net::HttpListener::ClientSocket())) {
    if (call->client_gone()) ++streams_cancelled_total_;
    return SendError(res, error->status, error->message, error->retry_after_s);
  }
  if (spec->stream) return RespondStream(std::make_shared<CompletionCall>(std::move(*spec)), call, res);
  RespondWhole(*spec, call, res);
}

void GatewayServer::RespondWhole(CompletionCall& spec, std::shared_ptr<UpstreamCall> call, httplib::Response& res) {
  const bool chat = spec.chat;
  const int n = std::max(1, spec.request.n());
  std::vector<std::string> text(n);
  std::vector<json> finish(n, nullptr);
  std::vector<json> logprobs(n, nullptr);
  int prompt_tokens = 0, completion_tokens = 0, cached = 0;
  v1::GenerateResponse m = call->first();
  const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + m.request_id();
  do {
    const int i = m.index();
    if (i < 0 || i >= n) continue;
    text[i] += m.text();
    if (spec.logprobs) {
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
  } while (call->Read(&m));
  const std::optional<HttpError> error = call->Finish();
  if (call->client_gone()) ++streams_cancelled_total_;
  if (error) return SendError(res, error->status, error->message, error->retry_after_s);
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
  res.set_content(Dump({{"id", id},
                        {"object", chat ? "chat.completion" : "text_completion"},
                        {"created", Now()},
                        {"model", spec.model.empty() ? "xlserve" : spec.model},
                        {"choices", choices},
                        {"usage", UsageJson(prompt_tokens, completion_tokens, cached)}}),
                  "application/json");
}

// One SSE chunk per upstream message, then [DONE]. A client that goes away is noticed when a
// write fails or, between messages, by the hang-up watch; either cancels the upstream call.
void GatewayServer::RespondStream(std::shared_ptr<CompletionCall> spec, std::shared_ptr<UpstreamCall> call,
                                  httplib::Response& res) {
  const bool chat = spec->chat;
  const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + call->first().request_id();
  const std::string model = spec->model.empty() ? "xlserve" : spec->model;
  const int64_t created = Now();
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [this, call, spec, id, model, created, chat](size_t, httplib::DataSink& sink) {
        const char* chunk_object = chat ? "chat.completion.chunk" : "text_completion";
        int prompt_tokens = 0, completion_tokens = 0, cached = 0;
        std::vector<bool> role_sent(std::max(1, spec->request.n()), false);
        bool gone = false;
        auto send = [&](const json& j) {
          const std::string line = "data: " + Dump(j) + "\n\n";
          if (!gone && !sink.write(line.data(), line.size())) gone = true;
          return !gone;
        };
        v1::GenerateResponse m = call->first();
        do {
          const int i = m.index();
          json choice = {{"index", i}, {"finish_reason", FinishReason(m.finish_reason())}};
          if (spec->logprobs) choice["logprobs"] = LogprobsJson(m, chat);
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
            prompt_tokens = m.usage().prompt_tokens();
            cached = m.usage().cached_prompt_tokens();
            completion_tokens += m.usage().completion_tokens();
          }
          if (!send({{"id", id}, {"object", chunk_object}, {"created", created}, {"model", model},
                     {"choices", json::array({choice})}})) {
            call->Cancel();
            break;
          }
        } while (call->Read(&m));
        const std::optional<HttpError> error = call->Finish();
        if (gone || call->client_gone()) {
          ++streams_cancelled_total_;
        } else if (error) {
          ++errors_total_;
          send(ErrorBody(error->message, ErrorType(error->status), std::to_string(error->status)));
        }
        if (!gone && spec->include_usage) {
          send({{"id", id}, {"object", chunk_object}, {"created", created}, {"model", model},
                {"choices", json::array()}, {"usage", UsageJson(prompt_tokens, completion_tokens, cached)}});
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
