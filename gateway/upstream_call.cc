#include "gateway/upstream_call.h"

#include <algorithm>
#include <charconv>

#include "spdlog/spdlog.h"

namespace xlserve::gateway {

HttpError ToHttpError(const grpc::Status& status, const std::string& retry_after_ms) {
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::FAILED_PRECONDITION:
      // The server's validation messages name the field and the limit: the client needs them.
      return {400, status.error_message()};
    case grpc::StatusCode::NOT_FOUND: return {404, status.error_message()};
    case grpc::StatusCode::RESOURCE_EXHAUSTED: {
      if (retry_after_ms.empty()) return {413, "the request is larger than the server accepts"};
      int ms = 1000;
      std::from_chars(retry_after_ms.data(), retry_after_ms.data() + retry_after_ms.size(), ms);
      return {429, "the server is busy; retry later", std::max(1, (ms + 999) / 1000)};
    }
    case grpc::StatusCode::UNAVAILABLE: return {503, "no upstream replica is available", 1};
    case grpc::StatusCode::DEADLINE_EXCEEDED: return {504, "the request timed out"};
    case grpc::StatusCode::CANCELLED: return {503, "the request was cancelled"};
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED: return {502, "the gateway is not authorized by its upstream"};
    default: return {500, "internal error"};
  }
}

UpstreamCall::~UpstreamCall() {
  if (!reader_) return;
  context_->TryCancel();
  End(false);
}

std::optional<HttpError> UpstreamCall::Open(const CompletionCall& spec, std::chrono::system_clock::time_point deadline,
                                            int client_fd) {
  const int weight = std::max(1, spec.request.n());
  std::optional<HttpError> error;
  for (int attempt = 0; attempt < pool_->size(); ++attempt) {
    UpstreamPool::Verdict verdict;
    lease_ = pool_->Acquire(spec.affinity_key, weight, &verdict);
    if (verdict == UpstreamPool::Verdict::kBusy) return HttpError{429, "every replica is busy; retry later", 1};
    if (verdict == UpstreamPool::Verdict::kUnavailable) break;
    context_ = pool_->NewContext(deadline);
    watch_ = calls_->Add(context_.get(), client_fd);
    reader_ = lease_.stub->Generate(context_.get(), spec.request);
    if (reader_->Read(&first_)) return std::nullopt;
    error = End(true);
    if (client_gone_ || !error || error->status != 503) return error;
  }
  if (!error) error = HttpError{503, "no upstream replica is available", 1};
  return error;
}

std::optional<HttpError> UpstreamCall::Finish() { return End(true); }

std::optional<HttpError> UpstreamCall::End(bool count_failure) {
  const grpc::Status status = reader_->Finish();
  reader_.reset();
  client_gone_ = calls_->Remove(watch_) || client_gone_;
  // A replica that did not answer leaves rotation for a while, unless the call ended because
  // its client left or the gateway cancelled it.
  const bool replica_failed = count_failure && !client_gone_ && status.error_code() == grpc::StatusCode::UNAVAILABLE;
  pool_->Release(lease_, replica_failed);
  lease_ = {};
  if (status.ok()) return std::nullopt;
  std::string retry_after_ms;
  const auto& trailers = context_->GetServerTrailingMetadata();
  if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
    retry_after_ms.assign(it->second.data(), it->second.size());
  }
  if (!client_gone_ && status.error_code() != grpc::StatusCode::INVALID_ARGUMENT &&
      status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
    spdlog::warn("upstream {}: {} {}", context_->peer(), static_cast<int>(status.error_code()), status.error_message());
  }
  return ToHttpError(status, retry_after_ms);
}

}  // namespace xlserve::gateway
