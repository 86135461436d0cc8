#include "server/xlserve_service.h"

#include <atomic>
#include <chrono>

#include "engine/sampling/sampling_params.h"
#include "settings/setting.h"
#include "spdlog/spdlog.h"

namespace xlserve::server {
namespace {

using Clock = std::chrono::steady_clock;

std::string NextRequestId() {
  static std::atomic<uint64_t> counter{0};
  return "req-" + std::to_string(++counter);
}

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

grpc::Status Undecodable(const char* message_name) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      std::string("the request is not a valid ") + message_name + " message (or is missing)");
}

// A unary method on a streamed-unary handler: authorize, read, answer, write.
template <typename Request, typename Response, typename Answer>
grpc::Status Unary(grpc::ServerUnaryStreamer<Request, Response>* stream, const grpc::Status& authorized,
                   const char* message_name, Answer answer) {
  if (!authorized.ok()) return authorized;
  Request request;
  if (!stream->Read(&request)) return Undecodable(message_name);
  Response response;
  const grpc::Status status = answer(request, &response);
  if (status.ok()) stream->Write(response);
  return status;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::StatusOr<std::shared_ptr<Request>> BuildRequest(const v1::GenerateRequest& p, const ServerConfig& config,
                                                      const ModelConfig& model, const Tokenizer* tokenizer,
                                                      int mtp_heads) {
  if (!p.model().empty() && p.model() != config.model_name) {
    return absl::NotFoundError("model \"" + p.model() + "\" is not served here (this server serves \"" +
                               config.model_name + "\")");
  }
  auto r = std::make_shared<Request>();
  GenerationRequest& g = r->generation;
  const bool has_text = !p.prompt().empty();
  const bool has_ids = p.prompt_token_ids_size() > 0;
  if (has_text == has_ids) return Invalid("give exactly one of prompt and prompt_token_ids (non-empty)");
  if (has_text) {
    if (!tokenizer) return Invalid("this model has no tokenizer: send prompt_token_ids");
    absl::StatusOr<std::vector<int>> ids = tokenizer->Encode(p.prompt());
    if (!ids.ok()) return Invalid("prompt: " + std::string(ids.status().message()));
    g.prompt_ids.assign(ids->begin(), ids->end());
    if (g.prompt_ids.empty()) return Invalid("prompt encodes to no tokens");
  } else {
    g.prompt_ids.assign(p.prompt_token_ids().begin(), p.prompt_token_ids().end());
  }
  for (int32_t id : g.prompt_ids) {
    if (id < 0 || id >= model.vocab_size) {
      return Invalid("prompt_token_ids: id " + std::to_string(id) + " is outside the vocabulary [0, " +
                     std::to_string(model.vocab_size) + ")");
    }
  }
  if (static_cast<int>(g.prompt_ids.size()) > config.max_prompt_tokens) {
    return Invalid("prompt has " + std::to_string(g.prompt_ids.size()) + " tokens; the limit is " +
                   std::to_string(config.max_prompt_tokens));
  }
  g.max_new_tokens = p.has_max_tokens() ? p.max_tokens() : config.default_max_tokens;
  if (g.max_new_tokens < 1 || g.max_new_tokens > config.max_tokens) {
    return Invalid("max_tokens must be in [1, " + std::to_string(config.max_tokens) + "], got " +
                   std::to_string(g.max_new_tokens));
  }
  SamplingParams& s = g.sampling;
  if (p.has_temperature()) s.temperature = p.temperature();
  if (p.has_top_p()) s.top_p = p.top_p();
  if (p.has_top_k()) s.top_k = p.top_k();
  if (p.has_min_p()) s.min_p = p.min_p();
  if (p.has_repetition_penalty()) s.repetition_penalty = p.repetition_penalty();
  if (p.has_presence_penalty()) s.presence_penalty = p.presence_penalty();
  if (p.has_frequency_penalty()) s.frequency_penalty = p.frequency_penalty();
  if (p.has_seed()) s.seed = p.seed();
  if (absl::Status st = ValidateSamplingParams(s); !st.ok()) return st;
  for (int32_t id : p.stop_token_ids()) {
    if (id < 0 || id >= model.vocab_size) return Invalid("stop_token_ids: id " + std::to_string(id) + " out of range");
    r->user_stop_token_ids.push_back(id);
  }
  g.stop_token_ids = r->user_stop_token_ids;
  if (!p.ignore_eos()) g.stop_token_ids.insert(g.stop_token_ids.end(), model.eos_token_ids.begin(), model.eos_token_ids.end());
  if (p.stop_size() > 8) return Invalid("at most 8 stop strings");
  for (const std::string& stop : p.stop()) {
    if (stop.empty() || stop.size() > 256) return Invalid("stop strings must have 1 to 256 bytes");
    if (!tokenizer) return Invalid("stop strings need a tokenizer; use stop_token_ids");
    r->stop_strings.push_back(stop);
  }
  if (p.logprobs() < 0 || p.logprobs() > 20) return Invalid("logprobs must be in [0, 20]");
  r->logprobs = p.logprobs();
  r->n = p.n() == 0 ? 1 : p.n();
  if (r->n < 1 || r->n > config.max_n) return Invalid("n must be in [1, " + std::to_string(config.max_n) + "]");
  r->priority = p.priority();
  if (p.session_id().size() > 256) return Invalid("session_id is longer than 256 bytes");
  // It reaches log lines: a newline or an escape sequence there could forge or hide entries.
  for (unsigned char c : p.session_id()) {
    if (c < 0x20 || c == 0x7f) return Invalid("session_id must not contain control characters");
  }
  r->session_id = p.session_id();
  r->require_session = p.require_session();
  if (r->require_session && r->session_id.empty()) return Invalid("require_session needs a session_id");
  if (!r->session_id.empty() && r->n > 1) return Invalid("session_id needs n = 1");
  switch (p.speculation()) {
    case v1::SPECULATION_MODE_OFF: g.speculation = SpeculationMode::kOff; break;
    case v1::SPECULATION_MODE_ON: g.speculation = SpeculationMode::kOn; break;
    case v1::SPECULATION_MODE_AUTO: g.speculation = SpeculationMode::kAuto; break;
    default: g.speculation = config.speculation; break;
  }
  if (p.num_draft() < 0) return Invalid("num_draft must be >= 0");
  g.num_draft = p.num_draft() > 0 ? std::min(p.num_draft(), mtp_heads) : config.num_draft;
  r->id = NextRequestId();
  r->arrival = Clock::now();
  return r;
}

XlServeService::XlServeService(Scheduler* scheduler, const Tokenizer* tokenizer, const ModelConfig& model,
                               const ServerConfig& config, const Backend& backend, net::ApiKeys keys)
    : scheduler_(scheduler),
      tokenizer_(tokenizer),
      model_(model),
      config_(config),
      device_(backend.name()),
      mtp_heads_(backend.num_mtp_heads()),
      state_bytes_(backend.snapshot_bytes()),
      keys_(std::move(keys)) {}

grpc::Status XlServeService::Authorize(grpc::ServerContext* context, std::string* key_tag) const {
  key_tag->clear();
  if (!keys_.enabled()) return grpc::Status::OK;
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    if (std::optional<std::string> tag = keys_.Match(std::string_view(it->second.data(), it->second.size()))) {
      *key_tag = *tag;
      return grpc::Status::OK;
    }
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or unknown API key (authorization: Bearer KEY)");
}

grpc::Status XlServeService::StreamedGenerate(
    grpc::ServerContext* context, grpc::ServerSplitStreamer<v1::GenerateRequest, v1::GenerateResponse>* stream) {
  std::string key_tag;
  if (grpc::Status st = Authorize(context, &key_tag); !st.ok()) return st;
  v1::GenerateRequest proto;
  if (!stream->Read(&proto)) return Undecodable("xlserve.v1.GenerateRequest");
  return RunGeneration(context, proto, key_tag, stream);
}

grpc::Status XlServeService::StreamedTokenize(
    grpc::ServerContext* context, grpc::ServerUnaryStreamer<v1::TokenizeRequest, v1::TokenizeResponse>* stream) {
  std::string key_tag;
  return Unary(stream, Authorize(context, &key_tag), "xlserve.v1.TokenizeRequest",
               [this](const v1::TokenizeRequest& request, v1::TokenizeResponse* response) {
                 return TokenizeText(request, response);
               });
}

grpc::Status XlServeService::StreamedDetokenize(
    grpc::ServerContext* context, grpc::ServerUnaryStreamer<v1::DetokenizeRequest, v1::DetokenizeResponse>* stream) {
  std::string key_tag;
  return Unary(stream, Authorize(context, &key_tag), "xlserve.v1.DetokenizeRequest",
               [this](const v1::DetokenizeRequest& request, v1::DetokenizeResponse* response) {
                 return DetokenizeIds(request, response);
               });
}

grpc::Status XlServeService::StreamedGetModelInfo(
    grpc::ServerContext* context, grpc::ServerUnaryStreamer<v1::GetModelInfoRequest, v1::ModelInfo>* stream) {
  std::string key_tag;
  return Unary(stream, Authorize(context, &key_tag), "xlserve.v1.GetModelInfoRequest",
               [this](const v1::GetModelInfoRequest&, v1::ModelInfo* info) {
                 FillModelInfo(info);
                 return grpc::Status::OK;
               });
}

grpc::Status XlServeService::RunGeneration(grpc::ServerContext* context, const v1::GenerateRequest& proto,
                                           const std::string& key_tag,
                                           grpc::ServerSplitStreamer<v1::GenerateRequest, v1::GenerateResponse>* writer) {
  // gRPC admits messages up to twice the limit so that a merely large request gets a clear
  // INVALID_ARGUMENT here instead of a transport error.
  if (proto.ByteSizeLong() > static_cast<size_t>(config_.max_message_bytes)) {
    return ToGrpcStatus(absl::InvalidArgumentError("request of " + std::to_string(proto.ByteSizeLong()) +
                                                   " bytes exceeds the limit of " +
                                                   std::to_string(config_.max_message_bytes)));
  }
  absl::StatusOr<std::shared_ptr<Request>> built = BuildRequest(proto, config_, model_, tokenizer_, mtp_heads_);
  if (!built.ok()) return ToGrpcStatus(built.status());
  std::shared_ptr<Request> request = *built;
  // A session belongs to the key that opened it: the same id under another key is another
  // session. (The id was validated above, before the tag made it longer.)
  if (!key_tag.empty() && !request->session_id.empty()) request->session_id = key_tag + ":" + request->session_id;
  // The client's deadline, else the server's default; the scheduler drops the sequence after it.
  const auto system_now = std::chrono::system_clock::now();
  const auto client_deadline = context->deadline();
  const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config_.request_timeout_s));
  Clock::duration left = limit;
  if (client_deadline < system_now + std::chrono::hours(24 * 365)) {
    left = std::min(limit, std::chrono::duration_cast<Clock::duration>(client_deadline - system_now));
  }
  request->deadline = Clock::now() + left;
  spdlog::info("[{}] generate: {} prompt tokens, max_tokens {}, n {}, priority {}{}", request->id,
               request->generation.prompt_ids.size(), request->generation.max_new_tokens, request->n,
               request->priority, request->session_id.empty() ? "" : ", session " + request->session_id);
  if (absl::Status st = scheduler_->Submit(request); !st.ok()) {
    if (st.code() == absl::StatusCode::kResourceExhausted) context->AddTrailingMetadata("retry-after-ms", "1000");
    spdlog::warn("[{}] refused: {}", request->id, st.ToString());
    return ToGrpcStatus(st);
  }
  int finished = 0;
  bool client_gone = false;
  absl::Status error;
  bool expired = false;
  while (finished < request->n) {
    if (!client_gone && context->IsCancelled()) {
      client_gone = true;
      request->cancelled = true;
    }
    for (Event& e : request->events.Pop(std::chrono::milliseconds(50))) {
      v1::GenerateResponse out;
      out.set_index(e.index);
      out.set_request_id(request->id);
      for (const TokenEvent& t : e.tokens) {
        out.add_token_ids(t.token_id);
        if (request->logprobs > 0) {
          v1::TokenLogprob* lp = out.add_logprobs();
          lp->set_token_id(t.token_id);
          lp->set_logprob(t.logprob);
          for (const TopLogprob& top : t.top) {
            v1::TopLogprob* tl = lp->add_top_logprobs();
            tl->set_token_id(top.token_id);
            tl->set_logprob(top.logprob);
          }
        }
      }
      out.set_text(e.text);
      if (e.finish_reason) {
        ++finished;
        out.set_finish_reason(std::string(settings::NameOf(*e.finish_reason, kFinishReasonNames)));
        v1::Usage* u = out.mutable_usage();
        u->set_prompt_tokens(e.usage.prompt_tokens);
        u->set_completion_tokens(e.usage.completion_tokens);
        u->set_cached_prompt_tokens(e.usage.cached_prompt_tokens);
        u->set_prefill_tokens(e.usage.prefill_tokens);
        u->set_decode_steps(e.usage.decode_steps);
        u->set_drafted_tokens(e.usage.drafted_tokens);
        u->set_accepted_drafts(e.usage.accepted_drafts);
        u->set_session_resumed(e.usage.session_resumed);
        if (e.finish_reason == FinishReason::kError) error = e.error;
        const bool past_deadline = !client_gone && Clock::now() >= *request->deadline;
        if (e.finish_reason == FinishReason::kCancelled && past_deadline) expired = true;
      }
      if (!client_gone && !writer->Write(out)) {
        client_gone = true;
        request->cancelled = true;
      }
    }
  }
  spdlog::info("[{}] done{}", request->id, client_gone ? " (client gone)" : "");
  if (error.code() == absl::StatusCode::kNotFound) return ToGrpcStatus(error);  // require_session
  if (!error.ok()) return ToGrpcStatus(absl::InternalError(std::string(error.message())));
  if (expired) return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "request deadline exceeded");
  if (client_gone) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
  return grpc::Status::OK;
}

grpc::Status XlServeService::TokenizeText(const v1::TokenizeRequest& request, v1::TokenizeResponse* response) const {
  if (!tokenizer_) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "this model has no tokenizer");
  absl::StatusOr<std::vector<int>> ids = tokenizer_->Encode(request.text());
  if (!ids.ok()) return ToGrpcStatus(absl::InvalidArgumentError(std::string(ids.status().message())));
  for (int id : *ids) response->add_token_ids(id);
  return grpc::Status::OK;
}

grpc::Status XlServeService::DetokenizeIds(const v1::DetokenizeRequest& request,
                                            v1::DetokenizeResponse* response) const {
  if (!tokenizer_) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "this model has no tokenizer");
  const std::vector<int> ids(request.token_ids().begin(), request.token_ids().end());
  absl::StatusOr<std::string> text = tokenizer_->Decode(ids, request.skip_special_tokens());
  if (!text.ok()) return ToGrpcStatus(absl::InvalidArgumentError(std::string(text.status().message())));
  response->set_text(*text);
  return grpc::Status::OK;
}

void XlServeService::FillModelInfo(v1::ModelInfo* info) const {
  info->set_name(config_.model_name);
  info->set_vocab_size(model_.vocab_size);
  info->set_hidden_size(model_.hidden_size);
  info->set_num_blocks(model_.num_blocks);
  info->set_num_heads(model_.num_heads);
  info->set_mtp_heads(mtp_heads_);
  info->set_state_bytes_per_sequence(state_bytes_);
  info->set_max_num_seqs(config_.max_num_seqs);
  info->set_max_prompt_tokens(config_.max_prompt_tokens);
  info->set_max_tokens(config_.max_tokens);
  info->set_device(device_);
  for (int id : model_.eos_token_ids) info->add_eos_token_ids(id);
}

}  // namespace xlserve::server
