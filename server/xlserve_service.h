// XlServeService: the gRPC surface (proto/xlserve/v1/xlserve.proto). It validates requests,
// hands them to the Scheduler and streams its events back; errors become gRPC statuses here
// and nowhere else.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_config.h"
#include "engine/tokenizer/tokenizer.h"
#include "net/api_keys.h"
#include "proto/xlserve/v1/xlserve.grpc.pb.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/server_config.h"

namespace xlserve::server {

// Checks a GenerateRequest against the model and the server's limits and turns it into a
// Request. INVALID_ARGUMENT (or NOT_FOUND for another model's name) with a message naming
// the field.
absl::StatusOr<std::shared_ptr<Request>> BuildRequest(const v1::GenerateRequest& proto, const ServerConfig& config,
                                                      const ModelConfig& model, const Tokenizer* tokenizer,
                                                      int mtp_heads);

grpc::Status ToGrpcStatus(const absl::Status& status);

// Every method reads its request message itself: one that does not decode is a clear
// INVALID_ARGUMENT (gRPC's own decoding answers INTERNAL without detail). With API keys, every
// method needs "authorization: Bearer KEY" metadata, and a session belongs to the key that
// opened it.
class XlServeService final : public v1::XlServe::StreamedService {
 public:
  // Everything passed by pointer or reference must outlive the service.
  // The backend is only asked what ModelInfo reports (its device, heads and state size).
  XlServeService(Scheduler* scheduler, const Tokenizer* tokenizer, const ModelConfig& model,
                 const ServerConfig& config, const Backend& backend, net::ApiKeys keys);

  grpc::Status StreamedGenerate(
      grpc::ServerContext* context,
      grpc::ServerSplitStreamer<v1::GenerateRequest, v1::GenerateResponse>* stream) override;
  grpc::Status StreamedTokenize(grpc::ServerContext* context,
                                grpc::ServerUnaryStreamer<v1::TokenizeRequest, v1::TokenizeResponse>* stream) override;
  grpc::Status StreamedDetokenize(
      grpc::ServerContext* context,
      grpc::ServerUnaryStreamer<v1::DetokenizeRequest, v1::DetokenizeResponse>* stream) override;
  grpc::Status StreamedGetModelInfo(
      grpc::ServerContext* context, grpc::ServerUnaryStreamer<v1::GetModelInfoRequest, v1::ModelInfo>* stream) override;

 private:
  // OK when keys are off or the call carries one of them; *key_tag then names the key ("" off).
  grpc::Status Authorize(grpc::ServerContext* context, std::string* key_tag) const;
  grpc::Status RunGeneration(grpc::ServerContext* context, const v1::GenerateRequest& proto,
                             const std::string& key_tag,
                             grpc::ServerSplitStreamer<v1::GenerateRequest, v1::GenerateResponse>* stream);
  grpc::Status TokenizeText(const v1::TokenizeRequest& request, v1::TokenizeResponse* response) const;
  grpc::Status DetokenizeIds(const v1::DetokenizeRequest& request, v1::DetokenizeResponse* response) const;
  void FillModelInfo(v1::ModelInfo* info) const;

  Scheduler* scheduler_;
  const Tokenizer* tokenizer_;
  ModelConfig model_;
  ServerConfig config_;
  std::string device_;  // the backend's: "cpu" or "cuda", also where config.device was "auto"
  int mtp_heads_;
  int64_t state_bytes_;
  net::ApiKeys keys_;
};

}  // namespace xlserve::server
