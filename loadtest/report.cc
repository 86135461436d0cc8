#include "loadtest/report.h"

#include <cstdio>

namespace xlserve::loadtest {
namespace {

std::string Format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), fmt, args...);
  return buf;
}

std::string SloText(const Slo& slo) {
  if (!slo.ttft_ms && !slo.tpot_ms) return "no SLO: every successful request counts";
  std::string text = "SLO";
  if (slo.ttft_ms) text += Format(" TTFT <= %g ms", *slo.ttft_ms);
  if (slo.tpot_ms) text += Format(" TPOT <= %g ms", *slo.tpot_ms);
  return text;
}

nlohmann::json SummaryJson(const LatencySummary& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"max", s.max}};
}

nlohmann::json OptionalJson(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }

}  // namespace

std::string FormatTable(const RunRecord& run) {
  const RunStats& s = run.stats;
  std::string mode = run.rate ? Format("open loop, Poisson %.2f req/s", *run.rate)
                              : Format("closed loop, concurrency %d", run.concurrency);
  std::string out = "xlserve loadtest: " + run.target + ", " + mode + "\n";
  out += Format("  requests     %d sent, %d ok, %d failed (warm-up %d, not sent %d)\n", s.sent, s.succeeded, s.failed,
                run.warmup_sent, run.not_sent);
  out += Format("  duration     %.2f s\n", s.duration_s);
  out += Format("  throughput   %.2f req/s, %.1f output tok/s (tokens: %ld prompt, %ld output)\n",
                s.request_throughput, s.output_token_throughput, s.total_prompt_tokens, s.total_output_tokens);
  if (s.steady_window_s > 0) {
    out += Format("  steady       %.1f output tok/s over the %.2f s in which all %d users were busy\n",
                  s.steady_output_token_throughput, s.steady_window_s, run.concurrency);
  }
  out += Format("  goodput      %d/%d = %.1f%%, %.2f req/s (%s)\n", s.good, s.sent, 100 * s.goodput_fraction,
                s.goodput_rate, SloText(run.slo).c_str());
  out += Format("  %-12s %10s %10s %10s %10s %8s\n", "latency ms", "mean", "p50", "p90", "p99", "n");
  for (const auto& [name, summary] : {std::pair{"TTFT", &s.ttft_ms}, std::pair{"TPOT", &s.tpot_ms},
                                      std::pair{"ITL", &s.itl_ms}, std::pair{"E2E", &s.e2e_ms}}) {
    if (summary->count == 0) {
      out += Format("  %-12s %10s %10s %10s %10s %8d\n", name, "-", "-", "-", "-", 0);
      continue;
    }
    out += Format("  %-12s %10.2f %10.2f %10.2f %10.2f %8d\n", name, summary->mean, summary->p50, summary->p90,
                  summary->p99, summary->count);
  }
  if (!s.errors.empty()) {
    out += "  errors\n";
    for (const auto& [key, count] : s.errors) {
      out += Format("    %-26s %6d  %s\n", key.c_str(), count, s.error_sample.at(key).substr(0, 120).c_str());
    }
  }
  return out;
}

nlohmann::json RunToJson(const RunRecord& run) {
  const RunStats& s = run.stats;
  nlohmann::json errors = nlohmann::json::object(), samples = nlohmann::json::object();
  for (const auto& [key, count] : s.errors) {
    errors[key] = count;
    samples[key] = s.error_sample.at(key);
  }
  return {
      {"target", run.target},
      {"mode", run.rate ? "open" : "closed"},
      {"rate", OptionalJson(run.rate)},
      {"concurrency", run.rate ? nlohmann::json() : nlohmann::json(run.concurrency)},
      {"requests",
       {{"sent", s.sent},
        {"succeeded", s.succeeded},
        {"failed", s.failed},
        {"warmup", run.warmup_sent},
        {"not_sent", run.not_sent}}},
      {"duration_s", s.duration_s},
      {"tokens", {{"prompt", s.total_prompt_tokens}, {"output", s.total_output_tokens}}},
      {"throughput",
       {{"requests_per_s", s.request_throughput},
        {"output_tokens_per_s", s.output_token_throughput},
        {"steady_output_tokens_per_s",
         s.steady_window_s > 0 ? nlohmann::json(s.steady_output_token_throughput) : nlohmann::json()},
        {"steady_window_s", s.steady_window_s > 0 ? nlohmann::json(s.steady_window_s) : nlohmann::json()}}},
      {"ttft_ms", SummaryJson(s.ttft_ms)},
      {"tpot_ms", SummaryJson(s.tpot_ms)},
      {"itl_ms", SummaryJson(s.itl_ms)},
      {"e2e_ms", SummaryJson(s.e2e_ms)},
      {"goodput",
       {{"slo_ttft_ms", OptionalJson(run.slo.ttft_ms)},
        {"slo_tpot_ms", OptionalJson(run.slo.tpot_ms)},
        {"good", s.good},
        {"fraction", s.goodput_fraction},
        {"requests_per_s", s.goodput_rate}}},
      {"errors", errors},
      {"error_messages", samples},
  };
}

}  // namespace xlserve::loadtest
