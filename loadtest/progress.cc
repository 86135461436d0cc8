#include "loadtest/progress.h"

#include <unistd.h>

#include <algorithm>

namespace xlserve::loadtest {
namespace {

constexpr int kBarWidth = 30;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);

}  // namespace

bool IsTerminal(std::FILE* stream) { return isatty(fileno(stream)) == 1; }

Progress::Progress(std::FILE* out, bool interactive, std::string label, int total, double line_interval_s)
    : out_(out),
      interactive_(interactive),
      label_(std::move(label)),
      total_(std::max(total, 1)),
      line_interval_s_(line_interval_s),
      start_(std::chrono::steady_clock::now()),
      thread_([this] { Loop(); }) {}

Progress::~Progress() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  Draw(true);
}

void Progress::RequestDone(bool ok) { (ok ? ok_ : failed_).fetch_add(1); }

void Progress::Loop() {
  const auto interval = interactive_ ? std::chrono::duration_cast<std::chrono::milliseconds>(kRedrawInterval)
                                     : std::chrono::milliseconds(int64_t(line_interval_s_ * 1000));
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, interval, [this] { return stop_; })) Draw(false);
}

void Progress::Draw(bool final) {
  const int ok = ok_.load(), failed = failed_.load(), done = ok + failed;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? done / elapsed : 0;
  if (interactive_) {
    const int filled = std::min(kBarWidth, done * kBarWidth / total_);
    std::fprintf(out_, "\r\033[K%s [%s%s] %d/%d ok %d err %d %.1f req/s %.1fs", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(kBarWidth - filled, '.').c_str(), done, total_, ok,
                 failed, rate, elapsed);
    if (final) std::fputc('\n', out_);
  } else {
    std::fprintf(out_, "%s: %d/%d done (ok %d, err %d), %.1f req/s, %.1fs%s\n", label_.c_str(), done, total_, ok,
                 failed, rate, elapsed, final ? ", finished" : "");
  }
  std::fflush(out_);
}

}  // namespace xlserve::loadtest
