// Statistics of a load-test run: latency summaries (mean and percentiles), throughput, and
// goodput under latency SLOs, computed from per-request results.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "loadtest/load_client.h"

namespace xlserve::loadtest {

// The q-quantile (0 <= q <= 1) of ascending `sorted` values, interpolating linearly between
// the two nearest ranks (numpy's default). 0 for an empty input.
double Percentile(const std::vector<double>& sorted, double q);

struct LatencySummary {
  int count = 0;
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
};

// Summarises `values` (any order; taken by value and sorted).
LatencySummary Summarize(std::vector<double> values);

// Latency targets in milliseconds; an absent target holds for every request.
struct Slo {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
};

// Per-request derived latencies, in milliseconds. TPOT is the mean time per output token after
// the first, (e2e - ttft) / (output_tokens - 1); absent for requests with fewer than 2 tokens.
double TtftMs(const RequestResult& r);
std::optional<double> TpotMs(const RequestResult& r);

// Whether a request succeeded and met both targets of `slo`.
bool MeetsSlo(const RequestResult& r, const Slo& slo);

struct RunStats {
  int sent = 0;  // measured requests (warm-up excluded)
  int succeeded = 0;
  int failed = 0;
  std::map<std::string, int> errors;               // count per error key
  std::map<std::string, std::string> error_sample;  // first message per error key
  double duration_s = 0;
  long total_prompt_tokens = 0;
  long total_output_tokens = 0;
  double request_throughput = 0;       // successful requests per second
  double output_token_throughput = 0;  // output tokens of successful requests per second
  LatencySummary ttft_ms, tpot_ms, itl_ms, e2e_ms;
  // Requests that succeeded within the SLO: count, fraction of those sent, and per second.
  int good = 0;
  double goodput_fraction = 0;
  double goodput_rate = 0;
  // Closed loop: output tokens per second within the SteadyWindow, and its length; 0 without one.
  double steady_output_token_throughput = 0;
  double steady_window_s = 0;
};

// Closed loop: the span in which every user had a measured request in flight, from the end of
// the last warm-up request (or the first measured send, if later) to the last send. Over the
// whole run, the ramp (users still on their warm-up) and the drain (users out of requests) run
// fewer requests at once than the concurrency asked, and weigh on its rate by their share of it.
struct SteadyWindow {
  Clock::time_point begin, end;
};
// Absent when there is no such span (no measured request, or the last send precedes the last
// warm-up's end). Failed warm-up requests count by their end too.
std::optional<SteadyWindow> ClosedLoopSteadyWindow(const std::vector<RequestResult>& warmups,
                                                   const std::vector<RequestResult>& measured);

// `duration_s` is the measured window (first send to last completion); rates are 0 when it is.
// Latencies come from successful requests only; ITL pools the gaps between consecutive output
// chunks of every request (a chunk may carry several tokens under speculative decoding).
// `steady`: the successful requests' output chunks that arrived within it, each counted as its
// request's share (output tokens / chunks), over its length.
RunStats ComputeStats(const std::vector<RequestResult>& results, double duration_s, const Slo& slo,
                      const std::optional<SteadyWindow>& steady = std::nullopt);

}  // namespace xlserve::loadtest
