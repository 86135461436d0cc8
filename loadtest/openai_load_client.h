// OpenAiLoadClient: load-test requests as OpenAI-style streaming completions over HTTP:
// POST {base}/v1/completions with "stream": true, read as Server-Sent Events (choices[0].text
// deltas, a usage chunk when stream_options.include_usage is set, then "data: [DONE]").
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "loadtest/load_client.h"
#include "loadtest/request_options.h"

namespace xlserve::loadtest {

// Where completions are posted: scheme://host:port and the request path.
struct CompletionsEndpoint {
  std::string origin;  // "http://127.0.0.1:8000"
  std::string path;    // "/v1/completions"
};

// Accepts a base URL ("http://host:port", ".../v1") or the full completions URL.
absl::StatusOr<CompletionsEndpoint> ParseCompletionsUrl(const std::string& url);

class OpenAiLoadClient : public LoadClient {
 public:
  // `api_key` empty: no Authorization header; else sent as a bearer token.
  OpenAiLoadClient(CompletionsEndpoint endpoint, std::string api_key, RequestOptions options);
  RequestResult Send(const WorkloadRequest& request, Clock::time_point deadline) override;
  std::string Target() const override { return "http " + endpoint_.origin + endpoint_.path; }

 private:
  std::string RequestBody(const WorkloadRequest& request) const;

  CompletionsEndpoint endpoint_;
  std::string api_key_;
  RequestOptions options_;
};

}  // namespace xlserve::loadtest
