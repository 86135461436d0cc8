// Request: one Generate call as the scheduler sees it, and the channel its results flow back on.
//
// A gRPC thread creates the request, hands it to the scheduler, and reads events until the
// final one; the scheduler thread pushes events. Cancellation flows the other way through an
// atomic flag, seen at the next scheduler step. Shared by both threads via shared_ptr.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/generator.h"

namespace xlserve::server {

struct TopLogprob {
  int32_t token_id;
  float logprob;
};

struct TokenEvent {
  int32_t token_id;
  float logprob = 0;
  std::vector<TopLogprob> top;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;
  int prefill_tokens = 0;
  int decode_steps = 0;
  int drafted_tokens = 0;
  int accepted_drafts = 0;
  // With a session id: whether the session's state was found and continued (false: unknown
  // or evicted, so the prompt ran from the empty state).
  bool session_resumed = false;
};

// How a completion ended. Wider than the engine's xlserve::FinishReason: the server tells an
// end-of-sequence token from a stop the request asked for, and has requests that never finish.
enum class FinishReason {
  kLength,     // max_tokens reached
  kStop,       // a stop string or one of the request's stop token ids
  kEos,        // the model's end-of-sequence token
  kCancelled,  // the client went away, the deadline passed, or the server shut down
  kError,
};

// How the gRPC API spells each reason (GenerateResponse.finish_reason).
inline constexpr std::pair<FinishReason, std::string_view> kFinishReasonNames[] = {
    {FinishReason::kLength, "length"}, {FinishReason::kStop, "stop"},   {FinishReason::kEos, "eos"},
    {FinishReason::kCancelled, "cancelled"}, {FinishReason::kError, "error"}};

// What the scheduler sends back: new tokens and text, or the end of the completion.
struct Event {
  int index = 0;  // which completion (n > 1)
  std::vector<TokenEvent> tokens;
  std::string text;
  std::optional<FinishReason> finish_reason;  // set on the last event only
  absl::Status error;                         // with FinishReason::kError
  Usage usage;
};

class EventChannel {
 public:
  void Push(Event event);
  // Waits up to `timeout` for events; returns them all (empty on timeout).
  std::vector<Event> Pop(std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
};

struct Request {
  std::string id;
  GenerationRequest generation;  // validated
  std::vector<std::string> stop_strings;
  std::vector<int32_t> user_stop_token_ids;  // the request's own; generation's also holds EOS
  int logprobs = 0;  // top-n
  int n = 1;
  int priority = 0;
  std::string session_id;
  bool require_session = false;  // NOT_FOUND instead of a fresh state when the session is unknown
  std::chrono::steady_clock::time_point arrival;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::atomic<bool> cancelled{false};
  EventChannel events;
};

}  // namespace xlserve::server
