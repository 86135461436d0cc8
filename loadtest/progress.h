// Progress: a live view of a running load test on a stream (stderr). On a terminal it redraws
// one bar in place; otherwise (logs, CI) it prints a line every few seconds.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace xlserve::loadtest {

// Whether `stream` is a terminal (then a redrawn bar makes sense).
bool IsTerminal(std::FILE* stream);

class Progress {
 public:
  // `out` is borrowed and must outlive this object. `total` is how many requests the run will
  // send at most; `label` prefixes every line (e.g. "rate 4/s").
  Progress(std::FILE* out, bool interactive, std::string label, int total, double line_interval_s = 5.0);
  // Stops the drawing thread and prints the final state.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Thread-safe; called by the driver as each request ends.
  void RequestDone(bool ok);

 private:
  void Loop();
  void Draw(bool final);

  std::FILE* out_;
  bool interactive_;
  std::string label_;
  int total_;
  double line_interval_s_;
  std::chrono::steady_clock::time_point start_;
  std::atomic<int> ok_{0};
  std::atomic<int> failed_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace xlserve::loadtest
