// GrpcLoadClient: load-test requests as xlserve.v1.XlServe/Generate server-streaming calls.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loadtest/load_client.h"
#include "loadtest/request_options.h"

namespace grpc {
class Channel;
}

namespace xlserve::loadtest {

class GrpcLoadClient : public LoadClient {
 public:
  // `target` is HOST:PORT. Connections are made lazily, so an unreachable target shows up as
  // UNAVAILABLE results, not as a constructor failure.
  GrpcLoadClient(std::string target, RequestOptions options);
  RequestResult Send(const WorkloadRequest& request, Clock::time_point deadline) override;
  std::string Target() const override { return "grpc " + target_; }

 private:
  std::string target_;
  RequestOptions options_;
  // Several connections: one HTTP/2 connection caps concurrent streams (100 by default), and
  // one TCP stream would serialise all responses.
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<bool> connected_;  // connected once before the run: its requests wait for it
  std::atomic<size_t> next_channel_{0};
};

// Asks the server at `target` for its vocabulary size (GetModelInfo), waiting at most
// `timeout_s`; token-id prompts are drawn below it.
absl::StatusOr<int> QueryVocabSize(const std::string& target, double timeout_s);

// The canonical name of a gRPC status code, e.g. 14 -> "UNAVAILABLE".
std::string GrpcCodeName(int code);

}  // namespace xlserve::loadtest
