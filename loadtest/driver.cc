#include "loadtest/driver.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "loadtest/arrivals.h"

namespace xlserve::loadtest {
namespace {

// Sender threads for the open loop, started only as arrivals find all existing ones busy, so
// a slow rate uses few threads and a fast one up to `max_threads`.
class SenderPool {
 public:
  explicit SenderPool(int max_threads) : max_threads_(std::max(1, max_threads)) {}
  ~SenderPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  void Submit(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
    if (idle_ < int(tasks_.size()) && int(threads_.size()) < max_threads_) {
      threads_.emplace_back([this] { Work(); });
    } else {
      cv_.notify_one();
    }
  }

 private:
  void Work() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      ++idle_;
      cv_.wait(lock, [this] { return closing_ || !tasks_.empty(); });
      --idle_;
      if (tasks_.empty()) return;
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  const int max_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  int idle_ = 0;
  bool closing_ = false;
};

}  // namespace

LoadRun RunLoad(LoadClient& client, const std::vector<WorkloadRequest>& workload, const LoadOptions& options,
                const std::function<void(const RequestResult&)>& on_done) {
  const int total = int(workload.size());
  std::vector<RequestResult> results(total);
  std::vector<char> sent(total, 0);
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop_sending = start + std::chrono::microseconds(int64_t(options.duration_s * 1e6));
  const auto timeout = std::chrono::microseconds(int64_t(options.request_timeout_s * 1e6));

  auto send = [&](int i) {
    results[i] = client.Send(workload[i], Clock::now() + timeout);
    sent[i] = 1;
    if (on_done) on_done(results[i]);
  };

  if (options.rate) {
    const std::vector<double> arrivals = PoissonArrivalTimes(*options.rate, total, options.seed);
    SenderPool pool(options.max_in_flight);
    for (int i = 0; i < total; ++i) {
      const Clock::time_point due = start + std::chrono::microseconds(int64_t(arrivals[i] * 1e6));
      if (due >= stop_sending) break;
      std::this_thread::sleep_until(due);
      pool.Submit([&send, i] { send(i); });
    }
  } else {
    std::atomic<int> next{0};
    std::vector<std::thread> users;
    for (int u = 0; u < std::min(options.concurrency, total); ++u) {
      users.emplace_back([&] {
        for (int i = next++; i < total && Clock::now() < stop_sending; i = next++) send(i);
      });
    }
    for (std::thread& t : users) t.join();
  }

  LoadRun run;
  Clock::time_point first_send = Clock::time_point::max(), last_end = Clock::time_point::min();
  std::vector<RequestResult> warmups;
  for (int i = 0; i < total; ++i) {
    if (!sent[i]) {
      ++run.not_sent;
      continue;
    }
    if (i < options.warmup) {
      ++run.warmup_sent;
      warmups.push_back(std::move(results[i]));
      continue;
    }
    const RequestResult& r = results[i];
    first_send = std::min(first_send, r.sent);
    last_end = std::max(last_end, r.sent + std::chrono::microseconds(int64_t(r.e2e_s * 1e6)));
    run.measured.push_back(std::move(results[i]));
  }
  if (!run.measured.empty()) run.duration_s = std::chrono::duration<double>(last_end - first_send).count();
  if (!options.rate) run.steady = ClosedLoopSteadyWindow(warmups, run.measured);
  return run;
}

}  // namespace xlserve::loadtest
