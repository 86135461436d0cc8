// Scheduler: the one thread that owns the backend and the state slots (DESIGN §5).
//
// Request threads Submit() validated requests into a bounded waiting queue (higher priority
// first, then arrival order). Each loop iteration the scheduler admits waiting requests while
// slots are free, drops cancelled or expired sequences, runs chunked prefill, then one decode
// pass (BatchDecoder) over every decoding sequence — together within `step_token_budget`
// tokens, decode rows first, so a long prompt never stalls the streams already running — and
// streams the new tokens and text back on each request's EventChannel. Prompt prefixes and
// finished sessions are kept as host copies of their states, so a later request that shares
// them prefills only what is new. When a request outranks running sequences and
// no slot is free, the lowest-priority decoding sequence is swapped out to host memory (one
// state copy, no recompute) and resumed when a slot frees up.
#pragma once

#include <chrono>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend.h"
#include "engine/batch_decoder.h"
#include "engine/model/model_config.h"
#include "engine/state_cache.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/metrics.h"
#include "server/request.h"
#include "server/state_store.h"

namespace xlserve::server {

struct SchedulerOptions {
  int max_num_seqs = 8;            // state slots, i.e. sequences decoding at once
  int max_queue = 64;              // waiting requests before RESOURCE_EXHAUSTED
  int step_token_budget = 512;  // decode rows + prefill tokens per loop iteration
  int64_t prefix_cache_bytes = int64_t{256} << 20;
  int prefix_cache_min_tokens = 16;
  int prefix_cache_block_tokens = 256;  // also snapshot at every multiple of this
  int max_sessions = 256;
  std::chrono::seconds session_ttl{600};
};

class Scheduler {
 public:
  // `backend`, `tokenizer` (may be null: no text output) and `metrics` must outlive it.
  Scheduler(Backend* backend, const Tokenizer* tokenizer, const ModelConfig& config,
            const SchedulerOptions& options, Metrics* metrics);
  ~Scheduler();

  // Allocates the slots and starts the thread.
  absl::Status Start();
  // Queues a validated request. RESOURCE_EXHAUSTED when the queue is full (or n exceeds the
  // slots), UNAVAILABLE after Shutdown().
  absl::Status Submit(std::shared_ptr<Request> request);
  // Stops admitting and ends queued requests (finish_reason "cancelled"); running ones may
  // finish during `grace`, then the rest are cancelled too. Joins the thread.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(0));

  int slots_in_use() const;

 private:
  struct Sequence;

  void Loop();
  // Swaps decoding sequences of lower priority than the best waiting request out to host
  // memory while it lacks slots; brings swapped sequences back when slots free up.
  void Preempt();
  void ResumeSwapped();
  void Admit();
  absl::Status StartSequence(const std::shared_ptr<Request>& request, int index, int slot);
  // Ends queued requests that were cancelled or outlived their deadline, wherever they wait,
  // so they hold neither a queue place nor a gRPC thread until their turn comes.
  void DropCancelledWaiting();
  void DropCancelled();
  absl::Status PrefillStep();
  void FlushEvents();
  void Finish(Sequence& seq, const std::string& reason, absl::Status error = absl::OkStatus());
  void FailAll(const absl::Status& error);
  void OnToken(Sequence& seq, int32_t token, std::span<const float> logits);

  Backend* backend_;
  const Tokenizer* tokenizer_;
  ModelConfig config_;
  SchedulerOptions options_;
  Metrics* metrics_;

  std::unique_ptr<StateCache> cache_;
  BatchDecoder decoder_;
  PrefixCache prefix_cache_;
  SessionStore sessions_;
  std::list<std::unique_ptr<Sequence>> running_;
  std::list<std::unique_ptr<Sequence>> swapped_;  // preempted: state in host memory, no slot

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Request>> waiting_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point drain_deadline_;
  int slots_in_use_ = 0;
  std::thread thread_;
};

}  // namespace xlserve::server
