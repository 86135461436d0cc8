#include "server/metrics.h"

#include "net/prometheus_text.h"

namespace xlserve::server {
namespace {

const std::vector<double> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                            0.5,   1,      2.5,   5,    10,    30,   60};

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
}

void Histogram::Render(const std::string& name, const std::string& help, net::PrometheusText* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  out->Histogram(name, help, bounds_, counts_, sum_);
}

Metrics::Metrics()
    : time_to_first_token(kLatencyBounds),
      time_per_output_token(kLatencyBounds),
      e2e_latency(kLatencyBounds),
      tokens_per_decode_step({1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6}) {}

std::string Metrics::Render() const {
  net::PrometheusText out;
  time_to_first_token.Render("xlserve_time_to_first_token_seconds", "Time from arrival to the first token.", &out);
  time_per_output_token.Render("xlserve_time_per_output_token_seconds",
                               "Mean time per output token after the first, per request.", &out);
  e2e_latency.Render("xlserve_e2e_request_latency_seconds", "Time from arrival to the last token.", &out);
  tokens_per_decode_step.Render("xlserve_tokens_per_decode_step",
                                "Completion tokens per decode step of each finished request (1 + accepted drafts).",
                                &out);
  out.Gauge("xlserve_requests_running", "Sequences holding a state slot.", requests_running.load());
  out.Gauge("xlserve_requests_waiting", "Requests in the waiting queue.", requests_waiting.load());
  out.Gauge("xlserve_state_slots_in_use", "State slots in use.", slots_in_use.load());
  out.Gauge("xlserve_state_slots_total", "State slots allocated.", slots_total.load());
  out.Gauge("xlserve_sessions", "Sessions with a stored state.", sessions.load());
  out.Counter("xlserve_requests_total", "Generate requests accepted.", requests_total.load());
  out.Counter("xlserve_requests_rejected_total", "Requests refused with a full queue.", requests_rejected_total.load());
  out.Counter("xlserve_requests_cancelled_total", "Requests cancelled or past their deadline.",
              requests_cancelled_total.load());
  out.Counter("xlserve_preemptions_total", "Sequences swapped out to host memory for a higher priority.",
              preemptions_total.load());
  out.Counter("xlserve_prompt_tokens_total", "Prompt tokens received.", prompt_tokens_total.load());
  out.Counter("xlserve_prefill_tokens_total", "Tokens run through prefill.", prefill_tokens_total.load());
  out.Counter("xlserve_cached_prompt_tokens_total", "Prompt tokens served from prefix-cache or session states.",
              cached_prompt_tokens_total.load());
  out.Counter("xlserve_generation_tokens_total", "Tokens generated.", generation_tokens_total.load());
  out.Counter("xlserve_drafted_tokens_total", "Draft tokens verified.", drafted_tokens_total.load());
  out.Counter("xlserve_accepted_drafts_total", "Draft tokens accepted.", accepted_drafts_total.load());
  out.Counter("xlserve_sessions_resumed_total", "Requests that continued a stored session state.",
              sessions_resumed_total.load());
  out.Counter("xlserve_sessions_missed_total",
              "Requests naming a session that was unknown or evicted (run from the empty state).",
              sessions_missed_total.load());
  out.Counter("xlserve_engine_steps_total", "Forward passes of the engine thread.", engine_steps_total.load());
  out.Counter("xlserve_live_graph_builds_total",
              "Decode and verify steps since start-up that ran eagerly or were captured instead of replaying a "
              "CUDA graph (one-time work inside live steps; 0 without graphs).",
              live_graph_builds_total.load());
  out.Counter("xlserve_mixed_decode_steps_total",
              "Decode and verify steps whose sequences differ in shape (tokens, heads, logits): each runs eagerly "
              "where other steps replay a CUDA graph.",
              mixed_decode_steps_total.load());
  out.Counter("xlserve_engine_step_seconds_total", "Time in forward passes (host clock).",
              engine_step_seconds_total.load());
  out.Counter("xlserve_engine_loop_seconds_total",
              "Engine-thread time in scheduler iterations that ran a forward pass, the pass included.",
              engine_loop_seconds_total.load());
  out.Counter("xlserve_state_store_seconds_total",
              "Engine-thread time spent issuing state-store snapshots and restores (the copies run asynchronously).",
              state_store_seconds_total.load());
  StateStoreStats st;
  {
    std::lock_guard<std::mutex> lock(store_mu);
    st = store;
  }
  auto tiers = [&](const char* name, const char* type, const char* help, const int64_t (&v)[2]) {
    out.Labelled(name, type, help, "tier", {{"device", double(v[0])}, {"host", double(v[1])}});
  };
  tiers("xlserve_state_store_capacity_bytes", "gauge", "Bytes of snapshot buffers per tier.", st.capacity_bytes);
  tiers("xlserve_state_store_used_bytes", "gauge", "Bytes of snapshot buffers holding an entry, per tier.",
        st.used_bytes);
  tiers("xlserve_state_store_restores_total", "counter", "States restored into a slot, by the tier read.",
        st.restores);
  tiers("xlserve_state_store_evictions_total", "counter", "Entries dropped to make room, by the tier they left.",
        st.evictions);
  out.Labelled("xlserve_state_store_entries", "gauge", "Entries in the state store by kind.", "kind",
               {{"prefix", double(st.prefix_entries)},
                {"session", double(st.session_entries)},
                {"preempted", double(st.swapped_entries)}});
  out.Counter("xlserve_state_store_saves_total", "Snapshots taken into the state store.", double(st.saves));
  out.Counter("xlserve_state_store_spills_total", "Entries moved from the device tier to the host tier.",
              double(st.spills));
  out.Counter("xlserve_prefix_cache_lookups_total", "Prompts looked up in the prefix cache.", double(st.prefix_lookups));
  out.Counter("xlserve_prefix_cache_hits_total", "Prompts that restored a cached prefix state.", double(st.prefix_hits));
  out.Counter("xlserve_prefix_cache_hit_tokens_total", "Prompt tokens served from cached prefix states.",
              double(st.prefix_hit_tokens));
  out.Gauge("xlserve_prefix_tree_tokens", "Token ids of seen prompts held by the prefix tree.", double(st.tree_tokens));
  return out.text();
}

}  // namespace xlserve::server
