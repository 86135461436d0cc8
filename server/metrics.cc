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
  Scalar("xlserve_prefix_cache_entries", "gauge", "Cached prefix states.", prefix_cache_entries.load(), &out);
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
  return out;
}

}  // namespace xlserve::server
