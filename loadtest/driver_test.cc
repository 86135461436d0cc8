#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <thread>

#include "loadtest/driver.h"

namespace xlserve::loadtest {
namespace {

// Answers every request after a fixed delay and records how many were in flight at once.
class FakeClient : public LoadClient {
 public:
  explicit FakeClient(double delay_s) : delay_s_(delay_s) {}
  RequestResult Send(const WorkloadRequest& request, Clock::time_point) override {
    const int now = ++in_flight_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      max_in_flight_ = std::max(max_in_flight_, now);
      seen_max_tokens_.push_back(request.max_tokens);
    }
    RequestResult r;
    r.sent = Clock::now();
    std::this_thread::sleep_for(std::chrono::microseconds(int64_t(delay_s_ * 1e6)));
    --in_flight_;
    r.ok = true;
    r.ttft_s = r.e2e_s = delay_s_;
    r.chunk_times = {delay_s_};
    r.output_tokens = 1;
    return r;
  }
  std::string Target() const override { return "fake"; }
  int max_in_flight() const { return max_in_flight_; }
  std::vector<int> seen() const { return seen_max_tokens_; }

 private:
  double delay_s_;
  std::atomic<int> in_flight_{0};
  std::mutex mu_;
  int max_in_flight_ = 0;
  std::vector<int> seen_max_tokens_;
};

std::vector<WorkloadRequest> Workload(int n) {
  std::vector<WorkloadRequest> w(n);
  for (int i = 0; i < n; ++i) w[i].max_tokens = i;  // marks which request is which
  return w;
}

TEST_CASE("closed loop keeps exactly `concurrency` requests in flight and leaves out the warm-up") {
  FakeClient client(0.02);
  LoadOptions options;
  options.concurrency = 3;
  options.warmup = 2;
  std::atomic<int> done{0};
  const LoadRun run = RunLoad(client, Workload(14), options, [&](const RequestResult&) { ++done; });
  CHECK(done == 14);
  CHECK(client.max_in_flight() == 3);
  CHECK(run.warmup_sent == 2);
  CHECK(run.measured.size() == 12);
  CHECK(run.not_sent == 0);
  // 14 requests of 20 ms, three at a time: at least four rounds after the warm-up.
  CHECK(run.duration_s >= 0.06);
  CHECK(run.duration_s < 1.0);
  // All three users busy from the warm-ups' end to the last send, inside the measured span.
  REQUIRE(run.steady.has_value());
  CHECK(run.steady->end > run.steady->begin);
  CHECK(std::chrono::duration<double>(run.steady->end - run.steady->begin).count() < run.duration_s);
}

TEST_CASE("open loop sends at the offered rate whatever the latency") {
  // Each request takes 100 ms while they arrive every 10 ms on average: an open loop must overlap
  // them instead of waiting.
  FakeClient client(0.1);
  LoadOptions options;
  options.rate = 100;
  options.seed = 5;
  const Clock::time_point start = Clock::now();
  const LoadRun run = RunLoad(client, Workload(40), options);
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  CHECK(run.measured.size() == 40);
  CHECK(client.max_in_flight() >= 4);
  // 40 arrivals at 100/s take ~0.4 s, plus the last request's 0.1 s; a closed loop of one would
  // need 4 s.
  CHECK(wall < 1.5);
  CHECK_FALSE(run.steady.has_value());  // arrivals, not users: no span of all users busy
  auto seen = client.seen();
  std::sort(seen.begin(), seen.end());
  CHECK(seen == [] { std::vector<int> all(40); for (int i = 0; i < 40; ++i) all[i] = i; return all; }());
}

TEST_CASE("the duration limit stops sending, and max_in_flight bounds the senders") {
  FakeClient client(0.01);
  LoadOptions options;
  options.rate = 20;
  options.duration_s = 0.3;
  const LoadRun run = RunLoad(client, Workload(1000), options);
  // About 6 arrivals fit in 0.3 s at 20/s; the rest are never sent.
  CHECK(run.measured.size() < 30);
  CHECK(run.not_sent == 1000 - int(run.measured.size()));

  FakeClient slow(0.05);
  options.rate = 1000;
  options.duration_s = 10;
  options.max_in_flight = 2;
  const LoadRun capped = RunLoad(slow, Workload(10), options);
  CHECK(capped.measured.size() == 10);
  CHECK(slow.max_in_flight() <= 2);
}

}  // namespace
}  // namespace xlserve::loadtest
