#include "server/metrics.h"

#include <cstdio>

namespace xlserve::server {
namespace {

std::string Number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

void Scalar(const std::string& name, const char* type, const std::string& help, double value, std::string* out) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + Number(value) + "\n";
}

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
  ++count_;
}

void Histogram::Render(const std::string& name, const std::string& help, std::string* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    *out += name + "_bucket{le=\"" + Number(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += counts_.back();
  *out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  *out += name + "_sum " + Number(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : time_to_first_token(kLatencyBounds),
      time_per_output_token(kLatencyBounds),
      e2e_latency(kLatencyBounds),
      tokens_per_decode_step({1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6}) {}

std::string Metrics::Render() const {
  std::string out;
  time_to_first_token.Render("xlserve_time_to_first_token_seconds", "Time from arrival to the first token.", &out);
  time_per_output_token.Render("xlserve_time_per_output_token_seconds",
                               "Mean time per output token after the first, per request.", &out);
  e2e_latency.Render("xlserve_e2e_request_latency_seconds", "Time from arrival to the last token.", &out);
  tokens_per_decode_step.Render("xlserve_tokens_per_decode_step",
                                "Completion tokens per decode step of each finished request (1 + accepted drafts).",
                                &out);
  Scalar("xlserve_requests_running", "gauge", "Sequences holding a state slot.", requests_running.load(), &out);
  Scalar("xlserve_requests_waiting", "gauge", "Requests in the waiting queue.", requests_waiting.load(), &out);
  Scalar("xlserve_state_slots_in_use", "gauge", "State slots in use.", slots_in_use.load(), &out);
  Scalar("xlserve_state_slots_total", "gauge", "State slots allocated.", slots_total.load(), &out);
  Scalar("xlserve_sessions", "gauge", "Sessions with a stored state.", sessions.load(), &out);
  Scalar("xlserve_requests_total", "counter", "Generate requests accepted.", requests_total.load(), &out);
  Scalar("xlserve_requests_rejected_total", "counter", "Requests refused with a full queue.",
         requests_rejected_total.load(), &out);
  Scalar("xlserve_requests_cancelled_total", "counter", "Requests cancelled or past their deadline.",
         requests_cancelled_total.load(), &out);
  Scalar("xlserve_preemptions_total", "counter", "Sequences swapped out to host memory for a higher priority.",
         preemptions_total.load(), &out);
  Scalar("xlserve_prompt_tokens_total", "counter", "Prompt tokens received.", prompt_tokens_total.load(), &out);
  Scalar("xlserve_prefill_tokens_total", "counter", "Tokens run through prefill.", prefill_tokens_total.load(), &out);
  Scalar("xlserve_cached_prompt_tokens_total", "counter", "Prompt tokens served from prefix-cache or session states.",
         cached_prompt_tokens_total.load(), &out);
  Scalar("xlserve_generation_tokens_total", "counter", "Tokens generated.", generation_tokens_total.load(), &out);
  Scalar("xlserve_drafted_tokens_total", "counter", "Draft tokens verified.", drafted_tokens_total.load(), &out);
  Scalar("xlserve_accepted_drafts_total", "counter", "Draft tokens accepted.", accepted_drafts_total.load(), &out);
  Scalar("xlserve_sessions_resumed_total", "counter", "Requests that continued a stored session state.",
         sessions_resumed_total.load(), &out);
  Scalar("xlserve_sessions_missed_total", "counter",
         "Requests naming a session that was unknown or evicted (run from the empty state).",
         sessions_missed_total.load(), &out);
  Scalar("xlserve_engine_steps_total", "counter", "Forward passes of the engine thread.", engine_steps_total.load(),
         &out);
  Scalar("xlserve_engine_step_seconds_total", "counter", "Time in forward passes (host clock).",
         engine_step_seconds_total.load(), &out);
  Scalar("xlserve_state_store_seconds_total", "counter",
         "Engine-thread time spent issuing state-store snapshots and restores (the copies run asynchronously).",
         state_store_seconds_total.load(), &out);
  StateStoreStats st;
  {
    std::lock_guard<std::mutex> lock(store_mu);
    st = store;
  }
  auto tiers = [&](const std::string& name, const char* type, const std::string& help, const int64_t (&v)[2]) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    out += name + "{tier=\"device\"} " + Number(double(v[0])) + "\n";
    out += name + "{tier=\"host\"} " + Number(double(v[1])) + "\n";
  };
  tiers("xlserve_state_store_capacity_bytes", "gauge", "Bytes of snapshot buffers per tier.", st.capacity_bytes);
  tiers("xlserve_state_store_used_bytes", "gauge", "Bytes of snapshot buffers holding an entry, per tier.",
        st.used_bytes);
  tiers("xlserve_state_store_restores_total", "counter", "States restored into a slot, by the tier read.",
        st.restores);
  tiers("xlserve_state_store_evictions_total", "counter", "Entries dropped to make room, by the tier they left.",
        st.evictions);
  out += "# HELP xlserve_state_store_entries Entries in the state store by kind.\n"
         "# TYPE xlserve_state_store_entries gauge\n";
  out += "xlserve_state_store_entries{kind=\"prefix\"} " + Number(double(st.prefix_entries)) + "\n";
  out += "xlserve_state_store_entries{kind=\"session\"} " + Number(double(st.session_entries)) + "\n";
  out += "xlserve_state_store_entries{kind=\"preempted\"} " + Number(double(st.swapped_entries)) + "\n";
  Scalar("xlserve_state_store_saves_total", "counter", "Snapshots taken into the state store.", double(st.saves),
         &out);
  Scalar("xlserve_state_store_spills_total", "counter", "Entries moved from the device tier to the host tier.",
         double(st.spills), &out);
  Scalar("xlserve_prefix_cache_lookups_total", "counter", "Prompts looked up in the prefix cache.",
         double(st.prefix_lookups), &out);
  Scalar("xlserve_prefix_cache_hits_total", "counter", "Prompts that restored a cached prefix state.",
         double(st.prefix_hits), &out);
  Scalar("xlserve_prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from cached prefix states.",
         double(st.prefix_hit_tokens), &out);
  Scalar("xlserve_prefix_tree_tokens", "gauge", "Token ids of seen prompts held by the prefix tree.",
         double(st.tree_tokens), &out);
  return out;
}

}  // namespace xlserve::server
