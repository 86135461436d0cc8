#include "server/scheduler.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "engine/sampling/logprobs.h"
#include "engine/tokenizer/streaming_decoder.h"
#include "engine/util/status_macros.h"
#include "spdlog/spdlog.h"

namespace xlserve::server {

using Clock = std::chrono::steady_clock;

// One completion in flight: it owns a slot from admission to finish.
struct Scheduler::Sequence {
  std::shared_ptr<Request> request;
  int index = 0;
  int slot = -1;
  GenerationRequest generation;  // this completion's copy (its own seed when n > 1)
  bool heads = false;            // speculative: the MTP heads' states follow every token
  std::vector<int32_t> to_prefill;
  size_t prefilled = 0;
  // Prefix-cache snapshots are taken after these many to_prefill tokens (ascending); the key
  // is the prompt up to prompt_offset + that count.
  std::vector<size_t> cache_points;
  int prompt_offset = 0;
  int history_before = 0;  // tokens already in the restored state (session or prefix)
  int decoder_id = -1;
  std::unique_ptr<StreamingDecoder> text;
  std::string unsent_text;  // held back while it could still grow into a stop string
  std::vector<TokenEvent> new_tokens;
  Usage usage;
  bool stop_string_hit = false;
  bool finished = false;
  Clock::time_point first_token_time;
  std::vector<float> swapped_state;  // while preempted
};

Scheduler::Scheduler(Backend* backend, const Tokenizer* tokenizer, const ModelConfig& config,
                     const SchedulerOptions& options, Metrics* metrics)
    : backend_(backend),
      tokenizer_(tokenizer),
      config_(config),
      options_(options),
      metrics_(metrics),
      decoder_(backend),
      prefix_cache_(options.prefix_cache_bytes, options.prefix_cache_min_tokens),
      sessions_(options.max_sessions, options.session_ttl) {}

Scheduler::~Scheduler() { Shutdown(); }

absl::Status Scheduler::Start() {
  ASSIGN_OR_RETURN(StateCache cache, StateCache::Create(backend_, options_.max_num_seqs));
  cache_ = std::make_unique<StateCache>(std::move(cache));
  metrics_->slots_total = options_.max_num_seqs;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

absl::Status Scheduler::Submit(std::shared_ptr<Request> request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  if (request->n > options_.max_num_seqs) {
    return absl::InvalidArgumentError("n = " + std::to_string(request->n) + " exceeds the server's " +
                                      std::to_string(options_.max_num_seqs) + " sequence slots");
  }
  if (static_cast<int>(waiting_.size()) >= options_.max_queue) {
    ++metrics_->requests_rejected_total;
    return absl::ResourceExhaustedError("the waiting queue is full (" + std::to_string(options_.max_queue) +
                                        " requests); retry in a few seconds");
  }
  waiting_.push_back(std::move(request));
  metrics_->requests_waiting = static_cast<int64_t>(waiting_.size());
  ++metrics_->requests_total;
  cv_.notify_one();
  return absl::OkStatus();
}

void Scheduler::Shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) drain_deadline_ = Clock::now() + grace;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

int Scheduler::slots_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_in_use_;
}

void Scheduler::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (running_.empty() && waiting_.empty() && swapped_.empty() && !stopping_) {
        cv_.wait_for(lock, std::chrono::milliseconds(200));
      }
      if (stopping_) {
        // Queued requests end at once; started ones may finish until the grace period ends.
        for (auto& r : waiting_) r->cancelled = true;
        if (Clock::now() >= drain_deadline_) {
          for (auto& seq : running_) seq->request->cancelled = true;
          for (auto& seq : swapped_) seq->request->cancelled = true;
        }
      }
    }
    DropCancelledWaiting();
    ResumeSwapped();
    Preempt();
    Admit();
    DropCancelled();
    bool stop_now;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_now = stopping_ && running_.empty() && waiting_.empty() && swapped_.empty();
    }
    if (stop_now) return;
    if (absl::Status st = PrefillStep(); !st.ok()) FailAll(st);
    if (decoder_.has_unfinished()) {
      if (absl::Status st = decoder_.Step(); !st.ok()) FailAll(st);
    }
    FlushEvents();
    sessions_.Expire(Clock::now());
    metrics_->sessions = sessions_.size();
    metrics_->prefix_cache_entries = prefix_cache_.size();
  }
}

void Scheduler::Preempt() {
  int want_priority;
  int want_slots;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (waiting_.empty()) return;
    auto best = std::max_element(waiting_.begin(), waiting_.end(),
                                 [](const auto& a, const auto& b) { return a->priority < b->priority; });
    want_priority = (*best)->priority;
    want_slots = (*best)->n;
  }
  while (cache_->num_free() < want_slots) {
    // The victim: lowest priority, then the latest arrival (it has done the least work).
    Sequence* victim = nullptr;
    for (auto& seq : running_) {
      if (seq->finished || seq->decoder_id < 0 || seq->request->priority >= want_priority) continue;
      if (!victim || seq->request->priority < victim->request->priority ||
          (seq->request->priority == victim->request->priority && seq->request->arrival > victim->request->arrival)) {
        victim = seq.get();
      }
    }
    if (!victim) return;
    victim->swapped_state.resize(backend_->state_layout().slot_floats());
    if (!backend_->ReadSlot(victim->slot, victim->swapped_state).ok()) return;
    decoder_.Suspend(victim->decoder_id);
    (void)cache_->Release(victim->slot);
    victim->slot = -1;
    ++metrics_->preemptions_total;
    spdlog::info("[{}] preempted: state swapped to host memory", victim->request->id);
    for (auto it = running_.begin(); it != running_.end(); ++it) {
      if (it->get() == victim) {
        swapped_.splice(swapped_.end(), running_, it);
        break;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      --slots_in_use_;
    }
  }
  metrics_->slots_in_use = cache_->num_in_use();
}

void Scheduler::ResumeSwapped() {
  while (!swapped_.empty() && cache_->num_free() > 0) {
    // Highest priority first; it waits while a waiting request outranks it.
    auto best = std::max_element(swapped_.begin(), swapped_.end(), [](const auto& a, const auto& b) {
      return a->request->priority < b->request->priority;
    });
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& r : waiting_) {
        if (r->priority > (*best)->request->priority) return;
      }
      ++slots_in_use_;
    }
    Sequence& seq = **best;
    absl::StatusOr<int> slot = cache_->Acquire();
    if (!slot.ok()) return;
    seq.slot = *slot;
    if (absl::Status st = backend_->WriteSlot(seq.slot, seq.swapped_state); !st.ok()) {
      Finish(seq, "error", st);
      swapped_.erase(best);
      continue;
    }
    seq.swapped_state = {};
    decoder_.Resume(seq.decoder_id, seq.slot);
    spdlog::info("[{}] resumed from host memory", seq.request->id);
    running_.splice(running_.end(), swapped_, best);
  }
  metrics_->slots_in_use = cache_->num_in_use();
}

void Scheduler::Admit() {
  for (;;) {
    std::shared_ptr<Request> next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waiting_.empty()) return;
      // Highest priority first; arrival order among equals.
      auto best = std::min_element(waiting_.begin(), waiting_.end(), [](const auto& a, const auto& b) {
        return a->priority != b->priority ? a->priority > b->priority : a->arrival < b->arrival;
      });
      // A request cancelled since the sweep starts anyway; DropCancelled() ends it at once.
      if (cache_->num_free() < (*best)->n) return;
      next = *best;
      waiting_.erase(best);
      metrics_->requests_waiting = static_cast<int64_t>(waiting_.size());
    }
    for (int i = 0; i < next->n; ++i) {
      absl::StatusOr<int> slot = cache_->Acquire();
      absl::Status st = slot.ok() ? StartSequence(next, i, *slot) : slot.status();
      if (!st.ok()) {
        if (slot.ok()) (void)cache_->Release(*slot);
        Event e;
        e.index = i;
        e.finish_reason = "error";
        e.error = st;
        next->events.Push(std::move(e));
      }
    }
  }
}

absl::Status Scheduler::StartSequence(const std::shared_ptr<Request>& request, int index, int slot) {
  auto seq = std::make_unique<Sequence>();
  seq->request = request;
  seq->index = index;
  seq->slot = slot;
  seq->generation = request->generation;
  seq->generation.sampling.seed += static_cast<uint64_t>(index);
  seq->generation.token_logits = request->logprobs > 0;
  seq->heads = decoder_.SpeculationEnabled(seq->generation);
  if (tokenizer_) seq->text = std::make_unique<StreamingDecoder>(*tokenizer_);
  const std::vector<int32_t>& prompt = seq->generation.prompt_ids;
  seq->usage.prompt_tokens = static_cast<int>(prompt.size());

  std::optional<Session> session;
  if (!request->session_id.empty() && index == 0) session = sessions_.Get(request->session_id, Clock::now());
  if (session && seq->heads && !session->snapshot->heads_tracked) {
    // The stored state's MTP heads did not follow the conversation: decode it plainly.
    seq->heads = false;
    seq->generation.speculation = SpeculationMode::kOff;
  }
  if (session) {
    RETURN_IF_ERROR(backend_->WriteSlot(slot, session->snapshot->state));
    if (session->pending_token >= 0) seq->to_prefill.push_back(session->pending_token);
    seq->history_before = session->history_tokens;
    seq->usage.cached_prompt_tokens = session->history_tokens;
    seq->to_prefill.insert(seq->to_prefill.end(), prompt.begin(), prompt.end());
  } else {
    int cached = 0;
    if (auto hit = prefix_cache_.Lookup(prompt, seq->heads)) {
      RETURN_IF_ERROR(backend_->WriteSlot(slot, hit->second->state));
      cached = hit->first;
    }
    seq->usage.cached_prompt_tokens = cached;
    seq->history_before = cached;
    seq->to_prefill.assign(prompt.begin() + cached, prompt.end());
    seq->prompt_offset = cached;
    // Keep the states at every multiple of the block size (prompts sharing a header reuse it)
    // and after all but the last prompt token (a prompt that extends this one reuses all of it).
    const int key_len = static_cast<int>(prompt.size()) - 1;
    const int block = std::max(1, options_.prefix_cache_block_tokens);
    for (int at = (cached / block + 1) * block; at < key_len; at += block) {
      if (prefix_cache_.WorthCaching(at)) seq->cache_points.push_back(static_cast<size_t>(at - cached));
    }
    if (key_len > cached && prefix_cache_.WorthCaching(key_len)) {
      seq->cache_points.push_back(static_cast<size_t>(key_len - cached));
    }
  }
  metrics_->cached_prompt_tokens_total += seq->usage.cached_prompt_tokens;
  metrics_->prompt_tokens_total += seq->usage.prompt_tokens;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++slots_in_use_;
  }
  metrics_->slots_in_use = cache_->num_in_use();
  metrics_->requests_running = static_cast<int64_t>(running_.size() + 1);
  running_.push_back(std::move(seq));
  return absl::OkStatus();
}

void Scheduler::DropCancelledWaiting() {
  std::vector<std::shared_ptr<Request>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = Clock::now();
    auto gone = [now](const std::shared_ptr<Request>& r) {
      return r->cancelled || (r->deadline && now > *r->deadline);
    };
    std::copy_if(waiting_.begin(), waiting_.end(), std::back_inserter(dropped), gone);
    std::erase_if(waiting_, gone);
    metrics_->requests_waiting = static_cast<int64_t>(waiting_.size());
  }
  for (const auto& r : dropped) {
    for (int i = 0; i < r->n; ++i) {
      Event e;
      e.index = i;
      e.finish_reason = "cancelled";
      r->events.Push(std::move(e));
    }
    ++metrics_->requests_cancelled_total;
  }
}

void Scheduler::DropCancelled() {
  const auto now = Clock::now();
  for (auto& seq : running_) {
    if (seq->finished) continue;
    const bool expired = seq->request->deadline && now > *seq->request->deadline;
    if (seq->request->cancelled || expired) Finish(*seq, "cancelled");
  }
  for (auto& seq : swapped_) {
    const bool expired = seq->request->deadline && now > *seq->request->deadline;
    if (seq->request->cancelled || expired) Finish(*seq, "cancelled");
  }
  running_.remove_if([](const auto& s) { return s->finished; });
  swapped_.remove_if([](const auto& s) { return s->finished; });
}

absl::Status Scheduler::PrefillStep() {
  // Decode rows come first: they bound every running stream's time per token. Prefill takes
  // the rest, but at least a quarter of the budget, so that prompts keep moving under load.
  int decode_rows = 0;
  for (const auto& seq : running_) {
    if (seq->finished || seq->decoder_id < 0 || decoder_.finished(seq->decoder_id)) continue;
    decode_rows += seq->heads ? 1 + seq->generation.num_draft : 1;
  }
  const int step_budget = std::max(1, options_.step_token_budget);
  int budget = std::max({1, step_budget / 4, step_budget - decode_rows});
  std::vector<Sequence*> seqs;
  std::vector<SequenceInput> batch;
  for (auto& seq : running_) {
    if (budget == 0) break;
    if (seq->finished || seq->decoder_id >= 0) continue;
    size_t end = std::min(seq->to_prefill.size(), seq->prefilled + budget);
    // Stop at the next prefix-cache point so the state there can be copied out.
    for (size_t point : seq->cache_points) {
      if (point > seq->prefilled) {
        end = std::min(end, point);
        break;
      }
    }
    SequenceInput in;
    in.slot = seq->slot;
    in.tokens = std::span<const int32_t>(seq->to_prefill).subspan(seq->prefilled, end - seq->prefilled);
    in.mtp_heads = seq->heads;
    budget -= static_cast<int>(in.tokens.size());
    batch.push_back(in);
    seqs.push_back(seq.get());
  }
  if (batch.empty()) return absl::OkStatus();
  ForwardOutput out;
  RETURN_IF_ERROR(backend_->Forward(batch, &out));
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& seq = *seqs[i];
    seq.prefilled += batch[i].tokens.size();
    seq.usage.prefill_tokens += static_cast<int>(batch[i].tokens.size());
    metrics_->prefill_tokens_total += static_cast<int64_t>(batch[i].tokens.size());
    if (std::find(seq.cache_points.begin(), seq.cache_points.end(), seq.prefilled) != seq.cache_points.end()) {
      auto snapshot = std::make_shared<StateSnapshot>();
      snapshot->state.resize(backend_->state_layout().slot_floats());
      snapshot->heads_tracked = seq.heads;
      RETURN_IF_ERROR(backend_->ReadSlot(seq.slot, snapshot->state));
      const auto& prompt = seq.generation.prompt_ids;
      prefix_cache_.Insert(std::vector<int32_t>(prompt.begin(), prompt.begin() + seq.prompt_offset + seq.prefilled),
                           std::move(snapshot));
    }
    if (seq.prefilled < seq.to_prefill.size()) continue;
    Sequence* raw = &seq;
    ASSIGN_OR_RETURN(seq.decoder_id,
                     decoder_.Add(seq.slot, seq.generation, out, static_cast<int>(i),
                                  [this, raw](int32_t token, std::span<const float> logits) {
                                    OnToken(*raw, token, logits);
                                  }));
  }
  return absl::OkStatus();
}

void Scheduler::OnToken(Sequence& seq, int32_t token, std::span<const float> logits) {
  if (seq.new_tokens.empty() && seq.usage.completion_tokens == 0) {
    seq.first_token_time = Clock::now();
    metrics_->time_to_first_token.Observe(
        std::chrono::duration<double>(seq.first_token_time - seq.request->arrival).count());
  }
  ++seq.usage.completion_tokens;
  TokenEvent event{token, 0.0f, {}};
  if (seq.request->logprobs > 0) {
    std::vector<float> logp(logits.size());
    if (LogSoftmax(logits, logp).ok()) {
      event.logprob = logp[token];
      for (const auto& top : TopLogprobs(logp, seq.request->logprobs)) event.top.push_back({top.token, top.logprob});
    }
  }
  seq.new_tokens.push_back(std::move(event));
  if (!seq.text) return;
  absl::StatusOr<std::string> piece = seq.text->Push(token);
  seq.unsent_text += piece.ok() ? *piece : "\xEF\xBF\xBD";
}

void Scheduler::FlushEvents() {
  for (auto& seq_ptr : running_) {
    Sequence& seq = *seq_ptr;
    if (seq.finished || seq.decoder_id < 0) continue;
    const bool done = decoder_.finished(seq.decoder_id);
    Event e;
    e.index = seq.index;
    e.tokens = std::move(seq.new_tokens);
    seq.new_tokens.clear();
    if (done && seq.text) seq.unsent_text += seq.text->Flush();
    // Stop strings: cut at the first match; otherwise hold back any tail that could still
    // become one, so no part of a stop string is ever sent.
    size_t send = seq.unsent_text.size();
    for (const std::string& stop : seq.request->stop_strings) {
      const size_t at = seq.unsent_text.find(stop);
      if (at != std::string::npos && (!seq.stop_string_hit || at < send)) {
        seq.stop_string_hit = true;
        send = at;
      }
    }
    if (!seq.stop_string_hit && !done) {
      for (const std::string& stop : seq.request->stop_strings) {
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
    if (seq.stop_string_hit) seq.unsent_text.clear();
    if (!done && !seq.stop_string_hit) {
      if (!e.tokens.empty() || !e.text.empty()) seq.request->events.Push(std::move(e));
      continue;
    }
    std::string reason = "length";
    const GenerationResult& r = decoder_.result(seq.decoder_id);
    if (seq.stop_string_hit) {
      reason = "stop";
    } else if (r.finish_reason == FinishReason::kStop) {
      const int32_t last = r.tokens.back();
      const auto& eos = config_.eos_token_ids;
      const auto& user = seq.request->user_stop_token_ids;
      const bool user_stop = std::find(user.begin(), user.end(), last) != user.end();
      reason = !user_stop && std::find(eos.begin(), eos.end(), last) != eos.end() ? "eos" : "stop";
    }
    if (!e.tokens.empty() || !e.text.empty()) seq.request->events.Push(std::move(e));
    Finish(seq, reason);
  }
  running_.remove_if([](const auto& s) { return s->finished; });
  metrics_->requests_running = static_cast<int64_t>(running_.size());
}

void Scheduler::Finish(Sequence& seq, const std::string& reason, absl::Status error) {
  const auto now = Clock::now();
  if (seq.decoder_id >= 0) {
    const GenerationResult r = decoder_.Remove(seq.decoder_id);
    seq.usage.decode_steps = r.steps;
    seq.usage.drafted_tokens = r.drafted_tokens;
    seq.usage.accepted_drafts = r.accepted_drafts;
    metrics_->drafted_tokens_total += r.drafted_tokens;
    metrics_->accepted_drafts_total += r.accepted_drafts;
    if (reason != "cancelled" && reason != "error" && seq.slot >= 0 && !seq.request->session_id.empty() &&
        seq.index == 0) {
      auto snapshot = std::make_shared<StateSnapshot>();
      snapshot->state.resize(backend_->state_layout().slot_floats());
      snapshot->heads_tracked = seq.heads;
      if (backend_->ReadSlot(seq.slot, snapshot->state).ok()) {
        Session s;
        s.snapshot = std::move(snapshot);
        s.pending_token = r.tokens.empty() ? -1 : r.tokens.back();
        s.history_tokens = seq.history_before + static_cast<int>(seq.to_prefill.size()) +
                           static_cast<int>(r.tokens.size()) - 1;
        s.last_used = now;
        sessions_.Put(seq.request->session_id, std::move(s));
      }
    }
    if (seq.usage.completion_tokens > 0) {
      const double e2e = std::chrono::duration<double>(now - seq.request->arrival).count();
      metrics_->e2e_latency.Observe(e2e);
      if (seq.usage.completion_tokens > 1) {
        metrics_->time_per_output_token.Observe(std::chrono::duration<double>(now - seq.first_token_time).count() /
                                                (seq.usage.completion_tokens - 1));
      }
      if (r.steps > 0) {
        metrics_->tokens_per_decode_step.Observe(static_cast<double>(seq.usage.completion_tokens - 1) / r.steps);
      }
    }
  }
  metrics_->generation_tokens_total += seq.usage.completion_tokens;
  if (reason == "cancelled") ++metrics_->requests_cancelled_total;
  Event e;
  e.index = seq.index;
  e.tokens = std::move(seq.new_tokens);
  e.finish_reason = reason;
  e.error = std::move(error);
  e.usage = seq.usage;
  seq.request->events.Push(std::move(e));
  if (seq.slot >= 0) {  // a swapped-out sequence holds no slot
    (void)cache_->Release(seq.slot);
    std::lock_guard<std::mutex> lock(mu_);
    --slots_in_use_;
  }
  metrics_->slots_in_use = cache_->num_in_use();
  seq.finished = true;
}

void Scheduler::FailAll(const absl::Status& error) {
  spdlog::error("engine step failed: {}", error.ToString());
  for (auto& seq : running_) {
    if (!seq->finished) Finish(*seq, "error", error);
  }
  running_.remove_if([](const auto& s) { return s->finished; });
}

}  // namespace xlserve::server
