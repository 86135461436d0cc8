#include "loadtest/openai_load_client.h"

#include <httplib.h>

#include <algorithm>
#include <regex>
#include <tuple>
#include <utility>

#include "nlohmann/json.hpp"
#include "loadtest/sse_parser.h"

namespace xlserve::loadtest {
namespace {

// Connecting should be quick on any network a load test makes sense on; a refused or
// black-holed target then fails fast instead of holding a worker for the whole timeout.
constexpr double kMaxConnectSeconds = 5.0;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The error key and a readable cause of a failure below HTTP.
std::pair<std::string, std::string> TransportError(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return {"http connection", "cannot connect (refused or unreachable)"};
    case httplib::Error::ConnectionTimeout:
      return {"http connect timeout", "connecting timed out"};
    case httplib::Error::Canceled:
      return {"http timeout", "no complete response before the request timeout"};
    case httplib::Error::Read:
      return {"http read", "the connection failed while reading the response"};
    case httplib::Error::Write:
      return {"http write", "the connection failed while sending the request"};
    default:
      return {"http transport", "transport error: " + httplib::to_string(error)};
  }
}

// An OpenAI error body's message, or the body itself when it is not one.
std::string ErrorMessage(const std::string& body) {
  try {
    const nlohmann::json j = nlohmann::json::parse(body);
    if (j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
        j["error"]["message"].is_string()) {
      return j["error"]["message"].get<std::string>();
    }
  } catch (const nlohmann::json::exception&) {
  }
  return body.substr(0, 200);
}

}  // namespace

absl::StatusOr<CompletionsEndpoint> ParseCompletionsUrl(const std::string& url) {
  static const std::regex kUrl(R"((https?)://([^/:]+|\[[0-9a-fA-F:]+\])(?::(\d+))?(/.*)?)");
  std::smatch m;
  if (!std::regex_match(url, m, kUrl)) {
    return absl::InvalidArgumentError("--http: '" + url + "' is not a URL like http://HOST:PORT");
  }
  CompletionsEndpoint endpoint;
  endpoint.origin = m[1].str() + "://" + m[2].str() + (m[3].matched ? ":" + m[3].str() : "");
  std::string path = m[4].matched ? m[4].str() : "";
  while (!path.empty() && path.back() == '/') path.pop_back();
  auto ends_with = [&](const std::string& tail) {
    return path.size() >= tail.size() && path.compare(path.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (ends_with("/completions")) {
    endpoint.path = path;
  } else if (ends_with("/v1")) {
    endpoint.path = path + "/completions";
  } else {
    endpoint.path = path + "/v1/completions";
  }
  return endpoint;
}

OpenAiLoadClient::OpenAiLoadClient(CompletionsEndpoint endpoint, std::string api_key, RequestOptions options)
    : endpoint_(std::move(endpoint)), api_key_(std::move(api_key)), options_(std::move(options)) {}

std::string OpenAiLoadClient::RequestBody(const WorkloadRequest& request) const {
  nlohmann::json body = {
      {"max_tokens", request.max_tokens},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
  };
  if (request.prompt_token_ids.empty()) {
    body["prompt"] = request.prompt;
  } else {
    body["prompt"] = request.prompt_token_ids;
  }
  if (!options_.model.empty()) body["model"] = options_.model;
  if (options_.temperature) body["temperature"] = *options_.temperature;
  if (options_.ignore_eos) body["ignore_eos"] = true;
  if (!request.session_id.empty()) body["session_id"] = request.session_id;
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

RequestResult OpenAiLoadClient::Send(const WorkloadRequest& request, Clock::time_point deadline) {
  RequestResult result;
  result.sent = Clock::now();
  const double budget_s = std::max(0.001, std::chrono::duration<double>(deadline - result.sent).count());
  // One client per request: httplib clients are not safe to share between threads.
  httplib::Client client(endpoint_.origin);
  const auto micros = [](double s) { return std::chrono::microseconds(int64_t(s * 1e6)); };
  client.set_connection_timeout(micros(std::min(budget_s, kMaxConnectSeconds)));
  client.set_read_timeout(micros(budget_s));
  client.set_write_timeout(micros(budget_s));

  httplib::Request req;
  req.method = "POST";
  req.path = endpoint_.path;
  req.body = RequestBody(request);
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  if (!api_key_.empty()) req.set_header("Authorization", "Bearer " + api_key_);

  int status = 0;
  std::string error_body;
  bool done = false;
  int text_chunks = 0;
  std::string stream_error;
  SseParser parser([&](const std::string& data) {
    if (data == "[DONE]") {
      done = true;
      return;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(data);
    } catch (const nlohmann::json::exception&) {
      if (stream_error.empty()) stream_error = "an SSE event is not JSON: " + data.substr(0, 100);
      return;
    }
    if (j.contains("error")) {
      if (stream_error.empty()) stream_error = ErrorMessage(data);
      return;
    }
    if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
      const auto& choice = j["choices"][0];
      if (choice.contains("text") && choice["text"].is_string() && !choice["text"].get<std::string>().empty()) {
        const double t = SecondsSince(result.sent);
        if (result.chunk_times.empty()) result.ttft_s = t;
        result.chunk_times.push_back(t);
        ++text_chunks;
      }
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      result.output_tokens = j["usage"].value("completion_tokens", 0);
      result.prompt_tokens = j["usage"].value("prompt_tokens", 0);
    }
  });
  req.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
    if (status == 200) {
      parser.Feed(std::string_view(data, length));
    } else if (error_body.size() < 4096) {
      error_body.append(data, length);
    }
    return Clock::now() < deadline;
  };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  const bool sent = client.send(req, response, error);
  result.e2e_s = SecondsSince(result.sent);
  if (!sent) {
    std::tie(result.error_key, result.error_message) = TransportError(error);
    return result;
  }
  if (status != 200) {
    result.error_key = "http " + std::to_string(status);
    result.error_message = ErrorMessage(error_body);
    return result;
  }
  if (!stream_error.empty()) {
    result.error_key = "http stream error";
    result.error_message = stream_error;
    return result;
  }
  if (!done) {
    result.error_key = "http incomplete stream";
    result.error_message = "the stream ended without data: [DONE]";
    return result;
  }
  if (result.output_tokens == 0) result.output_tokens = text_chunks;
  result.ok = true;
  return result;
}

}  // namespace xlserve::loadtest
