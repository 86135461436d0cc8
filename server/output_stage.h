// OutputStage: everything a completion's tokens need after the engine made them —
// detokenization, stop strings, log-probabilities, metrics and delivery to the request's
// EventChannel — on a thread of its own, so the engine thread only plans, runs and samples.
//
// The engine hands over one OutputWork per sequence and step, in step order; the stage keeps
// each sequence's text state (SequenceOutput). A stop string found here ends the completion
// at once for the client (nothing past it is sent) and asks the engine, through
// SequenceOutput::stop_requested, to finish the sequence at its next step; tokens the engine
// made in between are dropped here. Push blocks while `max_queued` works wait (the stage
// falling behind slows the engine instead of growing memory without bound).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/model_config.h"
#include "engine/tokenizer/streaming_decoder.h"
#include "server/metrics.h"
#include "server/request.h"

namespace xlserve::server {

// One completion's output state, shared by the engine thread (which creates it) and the stage.
struct SequenceOutput {
  SequenceOutput(std::shared_ptr<Request> request_in, int index_in) : request(std::move(request_in)), index(index_in) {}
  const std::shared_ptr<Request> request;
  const int index;
  std::atomic<bool> stop_requested{false};  // set by the stage on a stop string

  // The stage's own.
  std::unique_ptr<StreamingDecoder> text;
  std::string unsent_text;  // held back while it could still grow into a stop string
  bool stop_string_hit = false;
  bool done = false;  // the final event went out
  int delivered_tokens = 0;
  std::chrono::steady_clock::time_point first_token_time;
};

// What one step made for one sequence, and its end when it ended.
struct OutputWork {
  std::shared_ptr<SequenceOutput> seq;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [tokens, vocab] when the request asked for logprobs
  int vocab_size = 0;
  std::optional<FinishReason> finish_reason;  // set on the last work of a sequence
  absl::Status error;                         // with FinishReason::kError
  Usage usage;                                // with finish_reason
};

class OutputStage {
 public:
  // `metrics` must outlive the stage. The text of a sequence comes from its SequenceOutput::text.
  explicit OutputStage(Metrics* metrics, size_t max_queued = 1 << 16);
  ~OutputStage();

  void Start();  // the stage's thread
  // Processes what is queued, then ends the thread.
  void Stop();
  void Push(std::vector<OutputWork> works);
  // Processes everything queued on the calling thread (tests, and a stage never started).
  void Drain();

 private:
  void Loop();
  void Process(OutputWork& work);

  Metrics* metrics_;
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<OutputWork> queue_;
  bool stopping_ = false;
  std::thread thread_;
  std::mutex process_mu_;  // one Process at a time, whichever thread drains
};

}  // namespace xlserve::server
