// UpstreamCall: one Generate call on a replica for one HTTP request: its context, stream,
// replica lease and hang-up watch (gateway/active_calls.h). Not thread-safe: one HTTP worker
// drives it. The destructor cancels a call left unfinished and releases what it holds.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "gateway/active_calls.h"
#include "gateway/openai_api.h"
#include "gateway/upstream_pool.h"

namespace xlserve::gateway {

// What an HTTP client is told about a failure: a status and a message that names no replica
// address or transport detail (those go to the gateway's log).
struct HttpError {
  int status = 500;
  std::string message;
  int retry_after_s = 0;  // > 0: send Retry-After
};

class UpstreamCall {
 public:
  UpstreamCall(UpstreamPool* pool, ActiveCalls* calls) : pool_(pool), calls_(calls) {}
  ~UpstreamCall();
  UpstreamCall(const UpstreamCall&) = delete;
  UpstreamCall& operator=(const UpstreamCall&) = delete;

  // Starts the call on a replica with room and reads its first message, so that errors the
  // server reports up front (bad fields, unknown model, full queue) can still become HTTP
  // statuses. A replica that does not answer is skipped for the next one. `client_fd` is the
  // HTTP client's socket, watched for a hang-up (-1: none). On failure returns the error to
  // answer with; client_gone() tells whether anyone is left to hear it.
  std::optional<HttpError> Open(const CompletionCall& spec, std::chrono::system_clock::time_point deadline,
                                int client_fd);

  const v1::GenerateResponse& first() const { return first_; }
  // The next message after first(); false at the end of the stream (then call Finish()).
  bool Read(v1::GenerateResponse* message) { return reader_->Read(message); }
  void Cancel() { context_->TryCancel(); }
  // Ends the call: its error, if any, as an HTTP error; releases the replica and the watch.
  std::optional<HttpError> Finish();
  bool client_gone() const { return client_gone_; }

 private:
  std::optional<HttpError> End(bool count_failure);

  UpstreamPool* pool_;
  ActiveCalls* calls_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader_;
  UpstreamPool::Lease lease_;
  uint64_t watch_ = 0;
  v1::GenerateResponse first_;
  bool client_gone_ = false;
};

// The HTTP answer for a failed upstream call. `retry_after_ms` is the server's trailer of
// that name ("" if absent): a full queue sends it, a gRPC message-size refusal does not.
HttpError ToHttpError(const grpc::Status& status, const std::string& retry_after_ms);

}  // namespace xlserve::gateway
