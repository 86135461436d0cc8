#include "server/output_stage.h"

#include <algorithm>

#include "engine/sampling/logprobs.h"

namespace xlserve::server {

using Clock = std::chrono::steady_clock;

OutputStage::OutputStage(Metrics* metrics, size_t max_queued) : metrics_(metrics), max_queued_(max_queued) {}

OutputStage::~OutputStage() { Stop(); }

void OutputStage::Start() { thread_ = std::thread([this] { Loop(); }); }

void OutputStage::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  ready_.notify_all();
  if (thread_.joinable()) thread_.join();
  Drain();
}

void OutputStage::Push(std::vector<OutputWork> works) {
  if (works.empty()) return;
  {
    std::unique_lock<std::mutex> lock(mu_);
    space_.wait(lock, [&] { return queue_.size() < max_queued_ || !thread_.joinable() || stopping_; });
    for (OutputWork& w : works) queue_.push_back(std::move(w));
  }
  ready_.notify_one();
}

void OutputStage::Loop() {
  for (;;) {
    std::deque<OutputWork> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty() && stopping_) return;
      batch.swap(queue_);
    }
    space_.notify_all();
    std::lock_guard<std::mutex> lock(process_mu_);
    for (OutputWork& w : batch) Process(w);
  }
}

void OutputStage::Drain() {
  std::deque<OutputWork> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(queue_);
  }
  space_.notify_all();
  std::lock_guard<std::mutex> lock(process_mu_);
  for (OutputWork& w : batch) Process(w);
}

void OutputStage::Process(OutputWork& work) {
  SequenceOutput& seq = *work.seq;
  if (seq.done) return;
  Request& request = *seq.request;
  const bool finishing = work.finish_reason.has_value();
  Event e;
  e.index = seq.index;
  for (size_t t = 0; t < work.tokens.size() && !seq.stop_string_hit; ++t) {
    const int32_t token = work.tokens[t];
    if (seq.delivered_tokens == 0) {
      seq.first_token_time = Clock::now();
      metrics_->time_to_first_token.Observe(std::chrono::duration<double>(seq.first_token_time - request.arrival).count());
    }
    ++seq.delivered_tokens;
    TokenEvent event{token, 0.0f, {}};
    if (request.logprobs > 0 && !work.logits.empty()) {
      const std::span<const float> row(work.logits.data() + t * work.vocab_size, work.vocab_size);
      std::vector<float> logp(row.size());
      if (LogSoftmax(row, logp).ok()) {
        event.logprob = logp[token];
        for (const auto& top : TopLogprobs(logp, request.logprobs)) event.top.push_back({top.token, top.logprob});
      }
    }
    e.tokens.push_back(std::move(event));
    if (!seq.text) continue;
    absl::StatusOr<std::string> piece = seq.text->Push(token);
    seq.unsent_text += piece.ok() ? *piece : "\xEF\xBF\xBD";
    // Stop strings: cut at the first match; nothing after it is ever sent.
    size_t cut = std::string::npos;
    for (const std::string& stop : request.stop_strings) cut = std::min(cut, seq.unsent_text.find(stop));
    if (cut != std::string::npos) {
      seq.unsent_text.resize(cut);
      seq.stop_string_hit = true;
      seq.stop_requested = true;
    }
  }
  // Send what is final: everything at the end or up to a stop string; otherwise hold back
  // any tail that could still become a stop string.
  if (finishing && !seq.stop_string_hit && seq.text) seq.unsent_text += seq.text->Flush();
  size_t send = seq.unsent_text.size();
  if (!finishing && !seq.stop_string_hit) {
    for (const std::string& stop : request.stop_strings) {
      for (size_t k = std::min(stop.size() - 1, seq.unsent_text.size()); k > 0; --k) {
        if (seq.unsent_text.compare(seq.unsent_text.size() - k, k, stop, 0, k) == 0) {
          send = std::min(send, seq.unsent_text.size() - k);
          break;
        }
      }
    }
  }
  e.text = seq.unsent_text.substr(0, send);
  seq.unsent_text.erase(0, send);
  if (!finishing) {
    if (!e.tokens.empty() || !e.text.empty()) request.events.Push(std::move(e));
    return;
  }
  // The engine's last work of the sequence (after a stop string it comes a step later, and
  // the tokens made meanwhile were dropped above).
  const Clock::time_point now = Clock::now();
  e.finish_reason = seq.stop_string_hit ? FinishReason::kStop : *work.finish_reason;
  e.error = std::move(work.error);
  e.usage = work.usage;
  e.usage.completion_tokens = seq.delivered_tokens;
  if (seq.delivered_tokens > 0 && e.finish_reason != FinishReason::kError) {
    metrics_->e2e_latency.Observe(std::chrono::duration<double>(now - request.arrival).count());
    if (seq.delivered_tokens > 1) {
      metrics_->time_per_output_token.Observe(std::chrono::duration<double>(now - seq.first_token_time).count() /
                                              (seq.delivered_tokens - 1));
    }
  }
  metrics_->generation_tokens_total += seq.delivered_tokens;
  seq.done = true;
  request.events.Push(std::move(e));
}

}  // namespace xlserve::server
