// Metrics: the server's counters, gauges and histograms, rendered in Prometheus text format
// (net/prometheus_text.h).
// Thread-safe; the scheduler and the gRPC threads update it, the /metrics handler reads it.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "server/state_store.h"

namespace xlserve::net {
class PrometheusText;
}

namespace xlserve::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Writes the histogram as metric `name`.
  void Render(const std::string& name, const std::string& help, net::PrometheusText* out) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // one per bound, plus +Inf
  double sum_ = 0;
};

struct Metrics {
  Metrics();

  Histogram time_to_first_token;     // seconds
  Histogram time_per_output_token;   // seconds, after the first token
  Histogram e2e_latency;             // seconds
  Histogram tokens_per_decode_step;  // per finished request: completion tokens / decode steps

  std::atomic<int64_t> requests_running{0};
  std::atomic<int64_t> requests_waiting{0};
  std::atomic<int64_t> slots_in_use{0};
  std::atomic<int64_t> slots_total{0};
  std::atomic<int64_t> sessions{0};

  std::atomic<int64_t> requests_total{0};
  std::atomic<int64_t> requests_rejected_total{0};  // queue full
  std::atomic<int64_t> requests_cancelled_total{0};
  std::atomic<int64_t> preemptions_total{0};
  std::atomic<int64_t> prompt_tokens_total{0};
  std::atomic<int64_t> prefill_tokens_total{0};
  std::atomic<int64_t> cached_prompt_tokens_total{0};
  std::atomic<int64_t> generation_tokens_total{0};
  std::atomic<int64_t> drafted_tokens_total{0};
  std::atomic<int64_t> accepted_drafts_total{0};
  std::atomic<int64_t> sessions_resumed_total{0};
  std::atomic<int64_t> sessions_missed_total{0};  // named a session that was unknown or evicted
  std::atomic<int64_t> engine_steps_total{0};
  std::atomic<double> engine_step_seconds_total{0};  // host time in forward passes
  // Engine-thread time in iterations that ran a pass, the pass included: minus the above, the
  // host's own work per step (planning, admission, token delivery), which the GPU waits for.
  std::atomic<double> engine_loop_seconds_total{0};
  std::atomic<double> state_store_seconds_total{0};  // engine-thread time in state-store calls
  // Decode and verify steps since start-up that ran eagerly or were captured instead of
  // replaying a graph (SchedulerOptions::graph_builds); warm-up should leave none to build.
  std::atomic<int64_t> live_graph_builds_total{0};
  // Decode steps whose sequences differ in shape (engine/step_shape.h), which no graph replays.
  std::atomic<int64_t> mixed_decode_steps_total{0};

  // The state store's figures as of the engine's last iteration.
  mutable std::mutex store_mu;
  StateStoreStats store;

  std::string Render() const;
};

}  // namespace xlserve::server
