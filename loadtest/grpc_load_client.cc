#include "loadtest/grpc_load_client.h"

#include <grpcpp/grpcpp.h>

#include <array>

#include "proto/xlserve/v1/xlserve.grpc.pb.h"

namespace xlserve::loadtest {
namespace {

constexpr int kChannels = 4;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::chrono::system_clock::time_point ToSystemClock(Clock::time_point t) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(t - Clock::now());
}

}  // namespace

std::string GrpcCodeName(int code) {
  static constexpr std::array<const char*, 17> kNames = {
      "OK",           "CANCELLED",        "UNKNOWN",        "INVALID_ARGUMENT",  "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
      "OUT_OF_RANGE", "UNIMPLEMENTED",    "INTERNAL",       "UNAVAILABLE",       "DATA_LOSS",         "UNAUTHENTICATED"};
  if (code >= 0 && code < int(kNames.size())) return kNames[code];
  return "CODE_" + std::to_string(code);
}

GrpcLoadClient::GrpcLoadClient(std::string target, RequestOptions options)
    : target_(std::move(target)), options_(std::move(options)) {
  for (int i = 0; i < kChannels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own per channel
    channels_.push_back(grpc::CreateCustomChannel(target_, grpc::InsecureChannelCredentials(), args));
  }
  // Connect before the run (all channels at once, bounded), so that connection set-up stays out
  // of the first requests' times.
  for (auto& channel : channels_) channel->GetState(/*try_to_connect=*/true);
  const auto until = std::chrono::system_clock::now() + std::chrono::seconds(3);
  for (auto& channel : channels_) connected_.push_back(channel->WaitForConnected(until));
}

RequestResult GrpcLoadClient::Send(const WorkloadRequest& request, Clock::time_point deadline) {
  v1::GenerateRequest proto;
  if (request.prompt_token_ids.empty()) {
    proto.set_prompt(request.prompt);
  } else {
    for (int id : request.prompt_token_ids) proto.add_prompt_token_ids(id);
  }
  proto.set_max_tokens(request.max_tokens);
  proto.set_ignore_eos(options_.ignore_eos);
  if (!request.session_id.empty()) proto.set_session_id(request.session_id);
  if (!options_.model.empty()) proto.set_model(options_.model);
  if (options_.temperature) proto.set_temperature(float(*options_.temperature));

  const size_t ch = next_channel_++ % channels_.size();
  auto stub = v1::XlServe::NewStub(channels_[ch]);
  grpc::ClientContext context;
  context.set_deadline(ToSystemClock(deadline));
  // A channel between connection attempts fails requests at once ("failed to connect to all
  // addresses"), which would measure the client's reconnect backoff, not the server: requests
  // on a channel that has connected wait for it, within their deadline. A server that never
  // answered is reported UNAVAILABLE at once.
  context.set_wait_for_ready(connected_[ch]);
  RequestResult result;
  result.sent = Clock::now();
  auto reader = stub->Generate(&context, proto);
  v1::GenerateResponse msg;
  int streamed_tokens = 0;
  std::string finish_reason;
  while (reader->Read(&msg)) {
    if (msg.token_ids_size() > 0 || !msg.text().empty()) {
      const double t = SecondsSince(result.sent);
      if (result.chunk_times.empty()) result.ttft_s = t;
      result.chunk_times.push_back(t);
      streamed_tokens += msg.token_ids_size();
    }
    if (!msg.finish_reason().empty()) {
      finish_reason = msg.finish_reason();
      result.output_tokens = msg.usage().completion_tokens();
      result.prompt_tokens = msg.usage().prompt_tokens();
    }
  }
  const grpc::Status status = reader->Finish();
  result.e2e_s = SecondsSince(result.sent);
  if (!status.ok()) {
    result.error_key = "grpc " + GrpcCodeName(status.error_code());
    result.error_message = status.error_message();
    return result;
  }
  if (finish_reason == "error" || finish_reason == "cancelled") {
    result.error_key = "grpc finish_reason=" + finish_reason;
    result.error_message = "the server ended the stream with finish_reason " + finish_reason;
    return result;
  }
  if (result.output_tokens == 0) result.output_tokens = streamed_tokens;
  result.ok = true;
  return result;
}

absl::StatusOr<int> QueryVocabSize(const std::string& target, double timeout_s) {
  auto stub = v1::XlServe::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000)));
  v1::ModelInfo info;
  const grpc::Status st = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
  if (!st.ok()) {
    return absl::UnavailableError("GetModelInfo on " + target + ": " + GrpcCodeName(st.error_code()) + ": " +
                                  st.error_message());
  }
  return info.vocab_size();
}

}  // namespace xlserve::loadtest
