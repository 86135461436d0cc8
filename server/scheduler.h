// Scheduler: the engine thread that owns the backend, the state slots and the state store
// (docs/design.md, "Scheduler").
//
// Request threads Submit() validated requests into a bounded waiting queue (higher priority
// first, then arrival order). Each iteration the engine thread ends cancelled and expired work,
// brings preempted sequences back or swaps lower-priority ones out, admits waiting requests
// while slots are free (restoring a session's or the longest cached prefix's state), and then
// runs ONE forward pass: every decoding sequence's rows (plain, or verify rows when it
// speculates) first, then prompt chunks within `step_token_budget` rows — at most
// `prefill_chunk_while_decoding` prompt tokens while streams are decoding, so that a long
// prompt arriving raises their time per token by a bounded factor. New tokens go to the
// OutputStage (detokenization, stop strings, logprobs, delivery) on its own thread.
// Snapshots for the prefix cache, sessions and preemption are asynchronous device copies
// into the StateStore; the engine never waits for one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
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
#include "server/output_stage.h"
#include "server/request.h"
#include "server/state_store.h"

namespace xlserve::server {

struct SchedulerOptions {
  int max_num_seqs = 8;                    // state slots, i.e. sequences decoding at once
  int max_queue = 64;                      // waiting requests before RESOURCE_EXHAUSTED
  int step_token_budget = 512;             // rows of one forward pass: decode + verify + prefill
  int prefill_chunk_while_decoding = 128;  // prompt tokens in a pass that also decodes
  // State store tiers in bytes; -1: auto (device: what the GPU has left after warm-up, less a
  // margin; host: an eighth of the machine's memory, at most 8 GiB).
  int64_t state_cache_device_bytes = -1;
  int64_t state_cache_host_bytes = -1;
  int prefix_cache_min_tokens = 16;
  int max_sessions = 100000;
  std::chrono::seconds session_ttl{1800};
  int num_draft = 3;   // the verify lengths warm-up prepares
  bool warm_up = true;
  // The backend's graph builds so far (runtime::GraphBuildCounter), read on the engine thread;
  // empty: not counted. Those after start-up are one-time work inside live steps.
  std::function<int64_t()> graph_builds;
  // false: no threads; tests drive RunIteration() and the output stage's Drain() themselves.
  bool threads = true;
};

class Scheduler {
 public:
  // `backend`, `tokenizer` (may be null: no text output) and `metrics` must outlive it.
  Scheduler(Backend* backend, const Tokenizer* tokenizer, const ModelConfig& config,
            const SchedulerOptions& options, Metrics* metrics);
  ~Scheduler();

  // Allocates the slots, warms the backend up, sizes and allocates the state store, and starts
  // the engine and output threads. Logs each stage with its time.
  absl::Status Start();
  // Queues a validated request. RESOURCE_EXHAUSTED when the queue is full, INVALID_ARGUMENT
  // when n exceeds the slots, UNAVAILABLE after Shutdown().
  absl::Status Submit(std::shared_ptr<Request> request);
  // Stops admitting and ends queued requests (FinishReason::kCancelled); running ones may
  // finish during `grace`, then the rest are cancelled too. Joins the threads.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(0));

  int slots_in_use() const;

  // One iteration of the engine thread (options.threads false: called by tests). Returns
  // false once shut down and drained.
  bool RunIteration();
  OutputStage& output() { return output_; }
  const StateStore& store() const { return *store_; }

 private:
  struct Sequence;

  void Loop();
  void Preempt();
  void ResumeSwapped();
  void Admit();
  absl::Status StartSequence(const std::shared_ptr<Request>& request, int index, int slot);
  // Ends queued requests that were cancelled or outlived their deadline, wherever they wait.
  void DropCancelledWaiting();
  // Ends running or swapped sequences that were cancelled, expired, or hit a stop string.
  void DropCancelled();
  // The iteration's forward pass: decode rows, then prompt chunks.
  absl::Status Step();
  absl::Status AfterPrefill(Sequence& seq, const ForwardOutput& out, int index);
  void FinishDecoded();
  void Finish(Sequence& seq, FinishReason reason, absl::Status error = absl::OkStatus());
  void FailAll(const absl::Status& error);
  void OnToken(Sequence& seq, int32_t token, std::span<const float> logits);
  void Deliver();
  void PublishMetrics();

  Backend* backend_;
  const Tokenizer* tokenizer_;
  ModelConfig config_;
  SchedulerOptions options_;
  Metrics* metrics_;

  std::unique_ptr<StateCache> cache_;
  std::unique_ptr<StateStore> store_;
  BatchDecoder decoder_;
  OutputStage output_;
  std::list<std::unique_ptr<Sequence>> running_;
  std::list<std::unique_ptr<Sequence>> swapped_;  // preempted: state in the store, no slot
  std::vector<SequenceInput> batch_;  // reused each step
  ForwardOutput step_out_;
  std::vector<OutputWork> works_;     // this iteration's, handed to the output stage
  std::chrono::steady_clock::time_point next_expiry_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Request>> waiting_;
  bool stopping_ = false;
  int64_t graph_builds_at_start_ = 0;  // options_.graph_builds after warm-up
  std::chrono::steady_clock::time_point drain_deadline_;
  int slots_in_use_ = 0;
  std::thread thread_;
};

}  // namespace xlserve::server
