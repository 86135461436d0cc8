#include "loadtest/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace xlserve::loadtest {
namespace {

Clock::duration SecondsAsDuration(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = std::clamp(q, 0.0, 1.0) * double(sorted.size() - 1);
  const size_t lo = size_t(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (rank - double(lo)) * (sorted[hi] - sorted[lo]);
}

LatencySummary Summarize(std::vector<double> values) {
  LatencySummary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.count = int(values.size());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / double(values.size());
  s.p50 = Percentile(values, 0.50);
  s.p90 = Percentile(values, 0.90);
  s.p99 = Percentile(values, 0.99);
  s.max = values.back();
  return s;
}

double TtftMs(const RequestResult& r) { return r.ttft_s * 1e3; }

std::optional<double> TpotMs(const RequestResult& r) {
  if (r.output_tokens < 2 || r.chunk_times.empty()) return std::nullopt;
  return (r.e2e_s - r.ttft_s) * 1e3 / double(r.output_tokens - 1);
}

bool MeetsSlo(const RequestResult& r, const Slo& slo) {
  if (!r.ok) return false;
  if (slo.ttft_ms && (r.chunk_times.empty() || TtftMs(r) > *slo.ttft_ms)) return false;
  if (slo.tpot_ms) {
    const std::optional<double> tpot = TpotMs(r);
    if (tpot && *tpot > *slo.tpot_ms) return false;
  }
  return true;
}

std::optional<SteadyWindow> ClosedLoopSteadyWindow(const std::vector<RequestResult>& warmups,
                                                   const std::vector<RequestResult>& measured) {
  if (measured.empty()) return std::nullopt;
  SteadyWindow w{Clock::time_point::min(), Clock::time_point::min()};
  for (const RequestResult& r : warmups) w.begin = std::max(w.begin, r.sent + SecondsAsDuration(r.e2e_s));
  for (const RequestResult& r : measured) w.end = std::max(w.end, r.sent);
  w.begin = std::max(w.begin, std::min_element(measured.begin(), measured.end(), [](const auto& a, const auto& b) {
                                return a.sent < b.sent;
                              })->sent);
  if (w.end <= w.begin) return std::nullopt;
  return w;
}

RunStats ComputeStats(const std::vector<RequestResult>& results, double duration_s, const Slo& slo,
                      const std::optional<SteadyWindow>& steady) {
  RunStats s;
  s.sent = int(results.size());
  s.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestResult& r : results) {
    if (!r.ok) {
      ++s.failed;
      if (s.errors[r.error_key]++ == 0) s.error_sample[r.error_key] = r.error_message;
      continue;
    }
    ++s.succeeded;
    s.total_prompt_tokens += r.prompt_tokens;
    s.total_output_tokens += r.output_tokens;
    if (!r.chunk_times.empty()) ttft.push_back(TtftMs(r));
    if (const std::optional<double> t = TpotMs(r)) tpot.push_back(*t);
    for (size_t i = 1; i < r.chunk_times.size(); ++i) itl.push_back((r.chunk_times[i] - r.chunk_times[i - 1]) * 1e3);
    e2e.push_back(r.e2e_s * 1e3);
    if (MeetsSlo(r, slo)) ++s.good;
  }
  s.ttft_ms = Summarize(std::move(ttft));
  s.tpot_ms = Summarize(std::move(tpot));
  s.itl_ms = Summarize(std::move(itl));
  s.e2e_ms = Summarize(std::move(e2e));
  if (duration_s > 0) {
    s.request_throughput = s.succeeded / duration_s;
    s.output_token_throughput = double(s.total_output_tokens) / duration_s;
    s.goodput_rate = s.good / duration_s;
  }
  s.goodput_fraction = s.sent > 0 ? double(s.good) / s.sent : 0;
  if (steady) {
    double tokens = 0;
    for (const RequestResult& r : results) {
      if (!r.ok || r.chunk_times.empty()) continue;
      const double per_chunk = double(r.output_tokens) / double(r.chunk_times.size());
      for (double t : r.chunk_times) {
        const Clock::time_point at = r.sent + SecondsAsDuration(t);
        if (at >= steady->begin && at <= steady->end) tokens += per_chunk;
      }
    }
    s.steady_window_s = std::chrono::duration<double>(steady->end - steady->begin).count();
    s.steady_output_token_throughput = tokens / s.steady_window_s;
  }
  return s;
}

}  // namespace xlserve::loadtest
