// XlServeService: the gRPC surface (proto/xlserve/v1/xlserve.proto). It validates requests,
// hands them to the Scheduler and streams its events back; errors become gRPC statuses here
// and nowhere else.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/tokenizer/tokenizer.h"
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

class XlServeService final : public v1::XlServe::Service {
 public:
  // Everything passed in must outlive the service.
  XlServeService(Scheduler* scheduler, const Tokenizer* tokenizer, const ModelConfig& model,
                 const ServerConfig& config, int mtp_heads, int64_t state_bytes);

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context, const v1::DetokenizeRequest* request,
                          v1::DetokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;

 private:
  Scheduler* scheduler_;
  const Tokenizer* tokenizer_;
  ModelConfig model_;
  ServerConfig config_;
  int mtp_heads_;
  int64_t state_bytes_;
};

}  // namespace xlserve::server
