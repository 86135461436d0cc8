#include "loadtest/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace xlserve::loadtest {

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

RunStats ComputeStats(const std::vector<RequestResult>& results, double duration_s, const Slo& slo) {
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
  return s;
}

}  // namespace xlserve::loadtest
