#include <catch2/catch.hpp>

#include "loadtest/stats.h"

namespace xlserve::loadtest {
namespace {

// A successful request: first output at ttft, then one chunk per token every `gap` seconds.
RequestResult Ok(double ttft, int tokens, double gap) {
  RequestResult r;
  r.ok = true;
  r.ttft_s = ttft;
  for (int i = 0; i < tokens; ++i) r.chunk_times.push_back(ttft + gap * i);
  r.e2e_s = r.chunk_times.back();
  r.output_tokens = tokens;
  r.prompt_tokens = 10;
  return r;
}

RequestResult Failed(const std::string& key, const std::string& message) {
  RequestResult r;
  r.error_key = key;
  r.error_message = message;
  return r;
}

TEST_CASE("percentiles interpolate between ranks like numpy") {
  const std::vector<double> v = {1, 2, 3, 4};
  CHECK(Percentile(v, 0.5) == Approx(2.5));
  CHECK(Percentile(v, 0.9) == Approx(3.7));
  CHECK(Percentile(v, 0.99) == Approx(3.97));
  CHECK(Percentile(v, 0.0) == 1);
  CHECK(Percentile(v, 1.0) == 4);
  CHECK(Percentile({5}, 0.99) == 5);
  CHECK(Percentile({}, 0.5) == 0);

  std::vector<double> hundred;
  for (int i = 100; i >= 1; --i) hundred.push_back(i);
  const LatencySummary s = Summarize(hundred);
  CHECK(s.count == 100);
  CHECK(s.mean == Approx(50.5));
  CHECK(s.p50 == Approx(50.5));
  CHECK(s.p90 == Approx(90.1));
  CHECK(s.p99 == Approx(99.01));
  CHECK(s.p50 <= s.p90);
  CHECK(s.p90 <= s.p99);
}

TEST_CASE("per-request TTFT and TPOT") {
  const RequestResult r = Ok(0.2, 11, 0.05);  // 10 gaps of 50 ms after the first token
  CHECK(TtftMs(r) == Approx(200));
  REQUIRE(TpotMs(r).has_value());
  CHECK(*TpotMs(r) == Approx(50));
  CHECK_FALSE(TpotMs(Ok(0.2, 1, 0.05)).has_value());
}

TEST_CASE("goodput counts successful requests within both SLOs") {
  const std::vector<RequestResult> results = {
      Ok(0.1, 5, 0.01),   // meets both
      Ok(0.3, 5, 0.01),   // TTFT too slow
      Ok(0.1, 5, 0.08),   // TPOT too slow
      Ok(0.1, 1, 0.0),    // one token: no TPOT, meets TTFT
      Failed("grpc UNAVAILABLE", "connection refused"),
  };
  Slo slo;
  slo.ttft_ms = 200;
  slo.tpot_ms = 50;
  const RunStats s = ComputeStats(results, 2.0, slo);
  CHECK(s.sent == 5);
  CHECK(s.succeeded == 4);
  CHECK(s.failed == 1);
  CHECK(s.good == 2);
  CHECK(s.goodput_fraction == Approx(0.4));
  CHECK(s.goodput_rate == Approx(1.0));

  CHECK(ComputeStats(results, 2.0, Slo{}).good == 4);  // no targets: every success counts
  Slo ttft_only;
  ttft_only.ttft_ms = 200;
  CHECK(ComputeStats(results, 2.0, ttft_only).good == 3);
}

TEST_CASE("run statistics: throughput, latency summaries and errors by key") {
  std::vector<RequestResult> results = {Ok(0.1, 4, 0.02), Ok(0.3, 4, 0.04)};
  results.push_back(Failed("http 503", "upstream down"));
  results.push_back(Failed("http 503", "second message is not kept"));
  results.push_back(Failed("http connection", "refused"));
  const RunStats s = ComputeStats(results, 4.0, Slo{});
  CHECK(s.request_throughput == Approx(0.5));
  CHECK(s.output_token_throughput == Approx(2.0));
  CHECK(s.total_prompt_tokens == 20);
  CHECK(s.ttft_ms.count == 2);
  CHECK(s.ttft_ms.mean == Approx(200));
  CHECK(s.itl_ms.count == 6);  // three gaps per request
  CHECK(s.itl_ms.p50 == Approx(30));
  CHECK(s.e2e_ms.p99 == Approx(417.4));
  CHECK(s.errors == std::map<std::string, int>{{"http 503", 2}, {"http connection", 1}});
  CHECK(s.error_sample.at("http 503") == "upstream down");

  const RunStats empty = ComputeStats({}, 0.0, Slo{});
  CHECK(empty.sent == 0);
  CHECK(empty.request_throughput == 0);
  CHECK(empty.goodput_fraction == 0);
}

// `users` closed-loop users whose requests run back to back: user u starts at u * stagger
// seconds; each request sends a token every second for `tokens` seconds.
struct ClosedLoop {
  std::vector<RequestResult> warmups, measured;
};
ClosedLoop Simulate(int users, double stagger, int tokens, int measured_each) {
  const Clock::time_point t0{};
  ClosedLoop run;
  for (int u = 0; u < users; ++u) {
    for (int i = 0; i <= measured_each; ++i) {
      RequestResult r = Ok(1.0, tokens, 1.0);
      r.sent = t0 + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(u * stagger + double(i) * tokens));
      (i == 0 ? run.warmups : run.measured).push_back(r);
    }
  }
  return run;
}

TEST_CASE("the steady window runs from the last warm-up's end to the last send") {
  const ClosedLoop run = Simulate(4, 2.5, 10, 20);
  const std::optional<SteadyWindow> w = ClosedLoopSteadyWindow(run.warmups, run.measured);
  REQUIRE(w.has_value());
  const auto at = [](Clock::time_point t) { return std::chrono::duration<double>(t.time_since_epoch()).count(); };
  CHECK(at(w->begin) == Approx(17.5));  // the last user's warm-up: sent at 7.5, 10 s long
  CHECK(at(w->end) == Approx(207.5));   // its last request: sent at 7.5 + 20 x 10
  // Without warm-ups, from the first measured send.
  const std::optional<SteadyWindow> cold = ClosedLoopSteadyWindow({}, run.measured);
  REQUIRE(cold.has_value());
  CHECK(at(cold->begin) == Approx(10));
  // No span in which every user was busy: none.
  CHECK_FALSE(ClosedLoopSteadyWindow(run.measured, run.warmups).has_value());
  CHECK_FALSE(ClosedLoopSteadyWindow(run.warmups, {}).has_value());
}

TEST_CASE("within the steady window the output rate is every user's, without the ramp and the drain") {
  const ClosedLoop run = Simulate(4, 2.5, 10, 20);
  const std::optional<SteadyWindow> w = ClosedLoopSteadyWindow(run.warmups, run.measured);
  // First measured send (10 s) to last end (7.5 + 21 x 10 s): 800 tokens in 207.5 s.
  const RunStats s = ComputeStats(run.measured, 207.5, Slo{}, w);
  CHECK(s.output_token_throughput == Approx(800 / 207.5));
  CHECK(s.steady_window_s == Approx(190));
  // Four users, a token a second each; a chunk on either edge of the window at most.
  CHECK(s.steady_output_token_throughput == Approx(4.0).epsilon(4.0 / 190));
  CHECK(s.steady_output_token_throughput > 1.02 * s.output_token_throughput);
  // Chunks carrying several tokens count for their share.
  ClosedLoop pairs = run;
  for (RequestResult& r : pairs.measured) {
    r.chunk_times.resize(5);
    for (int c = 0; c < 5; ++c) r.chunk_times[c] = 2.0 * (c + 1);
  }
  CHECK(ComputeStats(pairs.measured, 207.5, Slo{}, w).steady_output_token_throughput ==
        Approx(4.0).epsilon(8.0 / 190));
  // No window, no steady rate.
  CHECK(ComputeStats(run.measured, 207.5, Slo{}).steady_window_s == 0);
}

}  // namespace
}  // namespace xlserve::loadtest
