#include "gateway/active_calls.h"

#include <grpcpp/grpcpp.h>
#include <poll.h>

#include <vector>

namespace xlserve::gateway {
namespace {

// How often hang-ups are looked for; also how long a new call may wait to be watched.
constexpr int kWatchIntervalMs = 100;

}  // namespace

ActiveCalls::ActiveCalls() : watcher_([this] { WatchLoop(); }) {}

ActiveCalls::~ActiveCalls() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  watcher_.join();
}

uint64_t ActiveCalls::Add(grpc::ClientContext* context, int client_fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) context->TryCancel();
  const uint64_t id = next_id_++;
  calls_.emplace(id, Call{context, client_fd});
  cv_.notify_all();
  return id;
}

bool ActiveCalls::Remove(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = calls_.find(id);
  if (it == calls_.end()) return false;
  const bool gone = it->second.client_gone;
  calls_.erase(it);
  return gone;
}

void ActiveCalls::CancelAll() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  for (auto& [id, call] : calls_) call.context->TryCancel();
}

int ActiveCalls::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(calls_.size());
}

void ActiveCalls::WatchLoop() {
  std::vector<uint64_t> ids;
  std::vector<pollfd> fds;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    ids.clear();
    fds.clear();
    for (const auto& [id, call] : calls_) {
      if (call.fd < 0 || call.client_gone) continue;
      ids.push_back(id);
      // Only a hang-up: readable input (a pipelined request) is no reason to cancel.
      fds.push_back(pollfd{call.fd, POLLRDHUP, 0});
    }
    if (fds.empty()) {
      cv_.wait(lock);
      continue;
    }
    // The sockets stay open while registered: their connections are busy with these calls.
    lock.unlock();
    const int ready = ::poll(fds.data(), fds.size(), kWatchIntervalMs);
    lock.lock();
    if (ready <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = calls_.find(ids[i]);
      if (it == calls_.end()) continue;
      it->second.client_gone = true;
      it->second.context->TryCancel();
    }
  }
}

}  // namespace xlserve::gateway
