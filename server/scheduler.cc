#include "server/scheduler.h"

#include <unistd.h>

#include <algorithm>
#include <iterator>

#include "base/status_macros.h"
#include "engine/step_shape.h"
#include "engine/warm_up.h"
#include "spdlog/spdlog.h"

namespace xlserve::server {

using Clock = std::chrono::steady_clock;

namespace {

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The auto-sized device tier leaves this much of the GPU's free memory unused: room for the
// allocator's fragmentation, cuBLAS and graph workspaces, and other processes' contexts.
int64_t DeviceMargin(int64_t free) { return std::max<int64_t>(int64_t{2} << 30, free / 10); }

int64_t AutoHostBytes() {
  const int64_t physical = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  return std::min<int64_t>(int64_t{8} << 30, std::max<int64_t>(0, physical / 8));
}

}  // namespace

// One completion in flight: it owns a slot from admission to finish (none while preempted).
struct Scheduler::Sequence {
  std::shared_ptr<Request> request;
  int index = 0;
  int slot = -1;
  GenerationRequest generation;  // this completion's copy (its own seed when n > 1)
  bool heads = false;            // speculative: the MTP heads' states follow every token
  std::vector<int32_t> to_prefill;
  size_t prefilled = 0;
  // Counts of to_prefill tokens after which the state is kept as a prefix (ascending).
  std::vector<size_t> snapshot_points;
  int prompt_offset = 0;      // prompt tokens restored from the prefix cache
  bool session_turn = false;  // continuing a session's state: to_prefill is not a prompt prefix
  int history_before = 0;     // tokens already in the restored state
  int decoder_id = -1;
  int64_t swapped = -1;       // the store's entry while preempted
  std::shared_ptr<SequenceOutput> out;
  OutputWork work;  // what this iteration made, for the output stage
  Usage usage;
  bool finished = false;
  DeviceSampling first_sampling;  // the last prefill chunk's, when the backend samples
};

Scheduler::Scheduler(Backend* backend, const Tokenizer* tokenizer, const ModelConfig& config,
                     const SchedulerOptions& options, Metrics* metrics)
    : backend_(backend),
      tokenizer_(tokenizer),
      config_(config),
      options_(options),
      metrics_(metrics),
      decoder_(backend),
      output_(metrics) {}

Scheduler::~Scheduler() { Shutdown(); }

absl::Status Scheduler::Start() {
  Clock::time_point t = Clock::now();
  ASSIGN_OR_RETURN(StateCache cache, StateCache::Create(backend_, options_.max_num_seqs));
  cache_ = std::make_unique<StateCache>(std::move(cache));
  spdlog::info("start-up: {} state slots in {:.2f} s", options_.max_num_seqs, SecondsSince(t));
  if (options_.warm_up) {
    t = Clock::now();
    const WarmUpOptions warm{options_.max_num_seqs, options_.step_token_budget, options_.num_draft};
    StepCosts costs;
    RETURN_IF_ERROR(WarmUp(backend_, warm, [](const std::string& line) { spdlog::info("{}", line); }, &costs));
    decoder_.SetStepCosts(std::move(costs));
    spdlog::info("start-up: warm-up done in {:.2f} s", SecondsSince(t));
  }
  if (options_.graph_builds) graph_builds_at_start_ = options_.graph_builds();
  StateStoreOptions store;
  store.device_bytes = options_.state_cache_device_bytes;
  if (store.device_bytes < 0) {
    const int64_t free = backend_->FreeDeviceBytes();
    store.device_bytes = free > 0 ? std::max<int64_t>(0, free - DeviceMargin(free)) : 0;
  }
  store.host_bytes = options_.state_cache_host_bytes < 0 ? AutoHostBytes() : options_.state_cache_host_bytes;
  store.min_prefix_tokens = options_.prefix_cache_min_tokens;
  store.max_sessions = options_.max_sessions;
  store.session_ttl = options_.session_ttl;
  t = Clock::now();
  store_ = std::make_unique<StateStore>(backend_, store);
  RETURN_IF_ERROR(store_->Init());
  const double mib = static_cast<double>(backend_->snapshot_bytes()) / (1 << 20);
  spdlog::info("start-up: state store of {} device + {} host snapshots ({:.1f} MiB each: {:.2f} + {:.2f} GiB) in {:.2f} s",
               store_->capacity(SnapshotTier::kDevice), store_->capacity(SnapshotTier::kHost), mib,
               store_->capacity(SnapshotTier::kDevice) * mib / 1024, store_->capacity(SnapshotTier::kHost) * mib / 1024,
               SecondsSince(t));
  metrics_->slots_total = options_.max_num_seqs;
  PublishMetrics();
  next_expiry_ = Clock::now();
  if (options_.threads) {
    output_.Start();
    thread_ = std::thread([this] { Loop(); });
  }
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
  output_.Stop();
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
    }
    if (!RunIteration()) return;
  }
}

bool Scheduler::RunIteration() {
  const auto start = Clock::now();
  const int64_t steps_before = metrics_->engine_steps_total;
  {
    std::lock_guard<std::mutex> lock(mu_);
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
  if (!stop_now) {
    // Admissions show before the pass: a long prompt chunk can take seconds on the CPU.
    PublishMetrics();
    if (absl::Status st = Step(); !st.ok()) FailAll(st);
    FinishDecoded();
  }
  Deliver();
  if (Clock::now() >= next_expiry_) {
    store_->ExpireSessions();
    next_expiry_ = Clock::now() + std::chrono::seconds(1);
  }
  if (metrics_->engine_steps_total != steps_before) metrics_->engine_loop_seconds_total += SecondsSince(start);
  PublishMetrics();
  return !stop_now;
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
    absl::StatusOr<int64_t> saved = store_->SaveSwapped(victim->slot);
    if (!saved.ok()) return;  // the store is full of preempted states
    victim->swapped = *saved;
    decoder_.Suspend(victim->decoder_id);
    (void)cache_->Release(victim->slot);
    victim->slot = -1;
    ++metrics_->preemptions_total;
    spdlog::info("[{}] preempted: state kept in the state store", victim->request->id);
    for (auto it = running_.begin(); it != running_.end(); ++it) {
      if (it->get() == victim) {
        swapped_.splice(swapped_.end(), running_, it);
        break;
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    --slots_in_use_;
  }
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
    }
    Sequence& seq = **best;
    absl::StatusOr<int> slot = cache_->Acquire();
    if (!slot.ok()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++slots_in_use_;
    }
    seq.slot = *slot;
    const absl::Status st = store_->RestoreSwapped(seq.swapped, seq.slot);
    seq.swapped = -1;
    if (!st.ok()) {
      Finish(seq, FinishReason::kError, st);
      swapped_.erase(best);
      continue;
    }
    decoder_.Resume(seq.decoder_id, seq.slot);
    spdlog::info("[{}] resumed from the state store", seq.request->id);
    running_.splice(running_.end(), swapped_, best);
  }
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
        e.finish_reason = FinishReason::kError;
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
  if (decoder_.JoinsPlain(seq->generation)) seq->generation.speculation = SpeculationMode::kOff;
  seq->heads = decoder_.SpeculationEnabled(seq->generation);
  const std::vector<int32_t>& prompt = seq->generation.prompt_ids;
  seq->usage.prompt_tokens = static_cast<int>(prompt.size());

  const auto start = Clock::now();
  std::optional<StateStore::Session> session;
  if (!request->session_id.empty() && index == 0) {
    ASSIGN_OR_RETURN(session, store_->RestoreSession(request->session_id, slot));
    if (!session) {
      if (request->require_session) {
        return absl::NotFoundError("session \"" + request->session_id + "\" is unknown or was evicted");
      }
      ++metrics_->sessions_missed_total;
    } else {
      ++metrics_->sessions_resumed_total;
    }
  }
  if (session) {
    seq->usage.session_resumed = true;
    seq->session_turn = true;
    if (seq->heads && !session->heads_tracked) {
      // The stored state's MTP heads did not follow the conversation: decode it plainly.
      seq->heads = false;
      seq->generation.speculation = SpeculationMode::kOff;
    }
    if (session->pending_token >= 0) seq->to_prefill.push_back(session->pending_token);
    seq->history_before = session->history_tokens;
    seq->usage.cached_prompt_tokens = session->history_tokens;
    seq->to_prefill.insert(seq->to_prefill.end(), prompt.begin(), prompt.end());
  } else {
    ASSIGN_OR_RETURN(const StateStore::PromptPlan plan, store_->BeginPrompt(prompt, seq->heads, slot));
    seq->usage.cached_prompt_tokens = plan.cached_tokens;
    seq->history_before = plan.cached_tokens;
    seq->prompt_offset = plan.cached_tokens;
    seq->to_prefill.assign(prompt.begin() + plan.cached_tokens, prompt.end());
    for (int point : plan.snapshot_points) seq->snapshot_points.push_back(static_cast<size_t>(point - plan.cached_tokens));
  }
  metrics_->state_store_seconds_total += SecondsSince(start);
  metrics_->cached_prompt_tokens_total += seq->usage.cached_prompt_tokens;
  metrics_->prompt_tokens_total += seq->usage.prompt_tokens;
  seq->out = std::make_shared<SequenceOutput>(request, index);
  if (tokenizer_) seq->out->text = std::make_unique<StreamingDecoder>(*tokenizer_);
  seq->work.seq = seq->out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++slots_in_use_;
  }
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
      e.finish_reason = FinishReason::kCancelled;
      r->events.Push(std::move(e));
    }
    ++metrics_->requests_cancelled_total;
  }
}

void Scheduler::DropCancelled() {
  const auto now = Clock::now();
  for (auto* list : {&running_, &swapped_}) {
    for (auto& seq : *list) {
      if (seq->finished) continue;
      const bool expired = seq->request->deadline && now > *seq->request->deadline;
      if (seq->request->cancelled || expired) {
        Finish(*seq, FinishReason::kCancelled);
      } else if (seq->out->stop_requested) {
        Finish(*seq, FinishReason::kStop);
      }
    }
    list->remove_if([](const auto& s) { return s->finished; });
  }
}

absl::Status Scheduler::Step() {
  batch_.clear();
  const int decoding = decoder_.PlanStep(&batch_);
  int rows = 0;
  for (const SequenceInput& in : batch_) rows += static_cast<int>(in.tokens.size());
  // Decode rows first: they bound every running stream's time per token. Prompts take the
  // rest of the budget, and only a bounded chunk of it while streams are decoding.
  int budget = std::max(1, options_.step_token_budget - rows);
  if (decoding > 0) budget = std::min(budget, std::max(1, options_.prefill_chunk_while_decoding));
  std::vector<Sequence*> prefilling;
  for (auto& seq_ptr : running_) {
    Sequence& seq = *seq_ptr;
    if (budget == 0) break;
    if (seq.finished || seq.decoder_id >= 0 || seq.slot < 0) continue;
    size_t end = std::min(seq.to_prefill.size(), seq.prefilled + budget);
    // Stop at the next snapshot point so the state there can be kept.
    for (size_t point : seq.snapshot_points) {
      if (point > seq.prefilled) {
        end = std::min(end, point);
        break;
      }
    }
    SequenceInput in;
    in.slot = seq.slot;
    in.tokens = std::span<const int32_t>(seq.to_prefill).subspan(seq.prefilled, end - seq.prefilled);
    in.mtp_heads = seq.heads;
    if (end == seq.to_prefill.size()) {
      decoder_.PrepareLastPrefill(seq.generation, &in, &seq.first_sampling);
    } else {
      in.tokens_only = true;  // nothing is read from a chunk that leaves prompt tokens to run
    }
    budget -= static_cast<int>(in.tokens.size());
    batch_.push_back(in);
    prefilling.push_back(&seq);
  }
  if (batch_.empty()) return absl::OkStatus();
  if (DecodeOnlyStep(batch_) && !UniformDecodeStep(batch_)) ++metrics_->mixed_decode_steps_total;
  const auto start = Clock::now();
  RETURN_IF_ERROR(backend_->Forward(batch_, &step_out_));
  const double seconds = SecondsSince(start);
  ++metrics_->engine_steps_total;
  metrics_->engine_step_seconds_total += seconds;
  if (options_.graph_builds) metrics_->live_graph_builds_total = options_.graph_builds() - graph_builds_at_start_;
  if (decoding > 0) RETURN_IF_ERROR(decoder_.CompleteStep(step_out_, seconds));
  for (size_t j = 0; j < prefilling.size(); ++j) {
    RETURN_IF_ERROR(AfterPrefill(*prefilling[j], step_out_, decoding + static_cast<int>(j)));
  }
  return absl::OkStatus();
}

absl::Status Scheduler::AfterPrefill(Sequence& seq, const ForwardOutput& out, int index) {
  const size_t n = batch_[index].tokens.size();
  seq.prefilled += n;
  seq.usage.prefill_tokens += static_cast<int>(n);
  metrics_->prefill_tokens_total += static_cast<int64_t>(n);
  if (!seq.snapshot_points.empty() && seq.snapshot_points.front() == seq.prefilled) {
    seq.snapshot_points.erase(seq.snapshot_points.begin());
    const auto start = Clock::now();
    const std::vector<int32_t>& prompt = seq.generation.prompt_ids;
    RETURN_IF_ERROR(store_->SavePrefix(std::span<const int32_t>(prompt).first(seq.prompt_offset + seq.prefilled),
                                       seq.heads, seq.slot));
    metrics_->state_store_seconds_total += SecondsSince(start);
  }
  if (seq.prefilled < seq.to_prefill.size()) return absl::OkStatus();
  Sequence* raw = &seq;
  ASSIGN_OR_RETURN(seq.decoder_id, decoder_.Add(seq.slot, seq.generation, out, index,
                                                [this, raw](int32_t token, std::span<const float> logits) {
                                                  OnToken(*raw, token, logits);
                                                }));
  return absl::OkStatus();
}

void Scheduler::OnToken(Sequence& seq, int32_t token, std::span<const float> logits) {
  seq.work.tokens.push_back(token);
  if (seq.request->logprobs > 0 && !logits.empty()) {
    seq.work.vocab_size = static_cast<int>(logits.size());
    seq.work.logits.insert(seq.work.logits.end(), logits.begin(), logits.end());
  }
}

void Scheduler::FinishDecoded() {
  for (auto& seq_ptr : running_) {
    Sequence& seq = *seq_ptr;
    if (seq.finished || seq.decoder_id < 0 || !decoder_.finished(seq.decoder_id)) continue;
    const GenerationResult& r = decoder_.result(seq.decoder_id);
    FinishReason reason = FinishReason::kLength;
    if (r.finish_reason == xlserve::FinishReason::kStop) {
      const int32_t last = r.tokens.back();
      const auto& eos = config_.eos_token_ids;
      const auto& user = seq.request->user_stop_token_ids;
      const bool user_stop = std::find(user.begin(), user.end(), last) != user.end();
      reason = !user_stop && std::find(eos.begin(), eos.end(), last) != eos.end() ? FinishReason::kEos
                                                                                 : FinishReason::kStop;
    }
    Finish(seq, reason);
  }
  running_.remove_if([](const auto& s) { return s->finished; });
}

void Scheduler::Finish(Sequence& seq, FinishReason reason, absl::Status error) {
  const bool completed = reason != FinishReason::kCancelled && reason != FinishReason::kError;
  if (seq.decoder_id >= 0) {
    const GenerationResult r = decoder_.Remove(seq.decoder_id);
    seq.decoder_id = -1;
    seq.usage.decode_steps = r.steps;
    seq.usage.drafted_tokens = r.drafted_tokens;
    seq.usage.accepted_drafts = r.accepted_drafts;
    metrics_->drafted_tokens_total += r.drafted_tokens;
    metrics_->accepted_drafts_total += r.accepted_drafts;
    if (seq.usage.decode_steps > 0) {
      metrics_->tokens_per_decode_step.Observe(static_cast<double>(r.tokens.size() - 1) / r.steps);
    }
    // Keep the final state (every token but the last, which the state has not seen): as the
    // session's, or as the prefix a client resending the conversation would start with.
    const bool heads = seq.heads && !r.heads_dropped;
    if (completed && seq.slot >= 0 && !r.tokens.empty()) {
      const auto start = Clock::now();
      absl::Status st;
      if (!seq.request->session_id.empty() && seq.index == 0) {
        StateStore::Session s;
        s.pending_token = r.tokens.back();
        s.history_tokens = seq.history_before + static_cast<int>(seq.to_prefill.size()) +
                           static_cast<int>(r.tokens.size()) - 1;
        s.heads_tracked = heads;
        st = store_->SaveSession(seq.request->session_id, s, seq.slot);
      } else if (!seq.session_turn) {
        std::vector<int32_t> key = seq.generation.prompt_ids;
        key.insert(key.end(), r.tokens.begin(), r.tokens.end() - 1);
        st = store_->SavePrefix(key, heads, seq.slot);
      }
      if (!st.ok()) spdlog::warn("[{}] state not kept: {}", seq.request->id, st.ToString());
      metrics_->state_store_seconds_total += SecondsSince(start);
    }
  }
  if (seq.swapped >= 0) {
    store_->DropSwapped(seq.swapped);
    seq.swapped = -1;
  }
  if (reason == FinishReason::kCancelled) ++metrics_->requests_cancelled_total;
  OutputWork work = std::move(seq.work);
  work.seq = seq.out;
  work.finish_reason = reason;
  work.error = std::move(error);
  work.usage = seq.usage;
  works_.push_back(std::move(work));
  seq.work = OutputWork{};
  if (seq.slot >= 0) {
    (void)cache_->Release(seq.slot);
    seq.slot = -1;
    std::lock_guard<std::mutex> lock(mu_);
    --slots_in_use_;
  }
  seq.finished = true;
}

void Scheduler::FailAll(const absl::Status& error) {
  spdlog::error("engine step failed: {}", error.ToString());
  for (auto& seq : running_) {
    if (!seq->finished) Finish(*seq, FinishReason::kError, error);
  }
  running_.remove_if([](const auto& s) { return s->finished; });
}

void Scheduler::Deliver() {
  for (auto& seq : running_) {
    if (seq->work.tokens.empty()) continue;
    works_.push_back(std::move(seq->work));
    seq->work = OutputWork{};
    seq->work.seq = seq->out;
  }
  output_.Push(std::move(works_));
  works_.clear();
}

void Scheduler::PublishMetrics() {
  metrics_->slots_in_use = cache_->num_in_use();
  metrics_->requests_running = static_cast<int64_t>(running_.size());
  const StateStoreStats& s = store_->stats();
  std::lock_guard<std::mutex> lock(metrics_->store_mu);
  metrics_->store = s;
  metrics_->sessions = store_->num_sessions();
}

}  // namespace xlserve::server
