#include "gateway/upstream_pool.h"

#include <grpcpp/grpcpp.h>

namespace xlserve::gateway {
namespace {

// A failed replica is retried after this long; the scheduler on it may just have been busy.
constexpr std::chrono::seconds kDownTime{5};
constexpr size_t kMaxAffinities = 100000;

}  // namespace

UpstreamPool::UpstreamPool(const std::vector<std::string>& addresses) {
  for (const std::string& a : addresses) {
    auto r = std::make_unique<Replica>();
    r->address = a;
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    r->channel = grpc::CreateCustomChannel(a, grpc::InsecureChannelCredentials(), args);
    r->stub = v1::XlServe::NewStub(r->channel);
    replicas_.push_back(std::move(r));
  }
}

UpstreamPool::Lease UpstreamPool::Acquire(const std::string& affinity_key) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  int chosen = -1;
  if (!affinity_key.empty()) {
    auto it = affinity_.find(affinity_key);
    if (it != affinity_.end() && Up(*replicas_[it->second], now)) chosen = it->second;
  }
  if (chosen < 0) {
    for (int i = 0; i < static_cast<int>(replicas_.size()); ++i) {
      if (!Up(*replicas_[i], now)) continue;
      if (chosen < 0 || replicas_[i]->in_flight < replicas_[chosen]->in_flight) chosen = i;
    }
    if (chosen >= 0 && !affinity_key.empty()) {
      if (affinity_.size() >= kMaxAffinities) affinity_.clear();
      affinity_[affinity_key] = chosen;
    }
  }
  if (chosen < 0) return {};
  ++replicas_[chosen]->in_flight;
  return {chosen, replicas_[chosen]->stub.get(), replicas_[chosen]->address};
}

void UpstreamPool::Release(const Lease& lease, bool failed) {
  if (lease.index < 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  Replica& r = *replicas_[lease.index];
  --r.in_flight;
  if (failed) {
    r.down_until = std::chrono::steady_clock::now() + kDownTime;
    for (auto it = affinity_.begin(); it != affinity_.end();) {
      it = it->second == lease.index ? affinity_.erase(it) : std::next(it);
    }
  }
}

}  // namespace xlserve::gateway
