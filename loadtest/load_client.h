// LoadClient: sends one streaming completion and times it. Implementations speak gRPC
// (grpc_load_client.h) or OpenAI's REST API (openai_load_client.h).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "loadtest/workload.h"

namespace xlserve::loadtest {

using Clock = std::chrono::steady_clock;

// The timing of one request. Times are seconds since the request was sent.
struct RequestResult {
  bool ok = false;
  // Set when !ok: a key errors are counted under ("grpc UNAVAILABLE", "http 503",
  // "http connection") and the first message that came with it.
  std::string error_key;
  std::string error_message;
  Clock::time_point sent;
  double ttft_s = 0;                // first chunk with output
  double e2e_s = 0;                 // last byte of the response
  std::vector<double> chunk_times;  // arrival of every chunk with output, in order
  int output_tokens = 0;            // from the final usage when given, else counted chunks
  int prompt_tokens = 0;            // from the final usage; 0 when the server gave none
};

// Thread-safe: the driver calls Send from many threads at once.
class LoadClient {
 public:
  virtual ~LoadClient() = default;
  // Sends `request` and blocks until its stream ends, fails or passes `deadline` (then it is
  // cancelled and reported as a timeout). Never throws; failures are in the result.
  virtual RequestResult Send(const WorkloadRequest& request, Clock::time_point deadline) = 0;
  // "grpc 127.0.0.1:50051" or "http http://127.0.0.1:8000/v1/completions", for reports.
  virtual std::string Target() const = 0;
};

}  // namespace xlserve::loadtest
