#include "engine/util/thread_pool.h"

#include <algorithm>

namespace xlserve {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t max_tasks = std::max<int64_t>(1, n / grain);
  const int64_t tasks = std::min<int64_t>(max_tasks, 4 * static_cast<int64_t>(num_threads()));
  if (workers_.empty() || tasks <= 1) {
    fn(0, n);
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  fn_ = &fn;
  n_ = n;
  chunk_ = (n + tasks - 1) / tasks;
  next_ = 0;
  pending_ = static_cast<int>(workers_.size());
  ++generation_;
  lock.unlock();
  work_cv_.notify_all();
  // The caller works too, taking ranges from the same counter as the workers.
  for (;;) {
    lock.lock();
    const int64_t begin = next_;
    next_ = std::min(n_, next_ + chunk_);
    lock.unlock();
    if (begin >= n) break;
    fn(begin, std::min(n, begin + chunk_));
  }
  lock.lock();
  done_cv_.wait(lock, [this] { return pending_ == 0; });
  fn_ = nullptr;
}

void ThreadPool::WorkerLoop(int) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    for (;;) {
      const int64_t begin = next_;
      if (begin >= n_) break;
      next_ = std::min(n_, next_ + chunk_);
      const int64_t end = next_;
      const auto* fn = fn_;
      lock.unlock();
      (*fn)(begin, end);
      lock.lock();
    }
    if (--pending_ == 0) done_cv_.notify_all();
  }
}

}  // namespace xlserve
