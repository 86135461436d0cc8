// UpstreamPool: the xlserve replicas behind the gateway. Picks the least-loaded healthy
// replica, keeps a session on the replica that holds its state (affinity), and takes a replica
// out of rotation for a while after it fails to answer. Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proto/xlserve/v1/xlserve.grpc.pb.h"

namespace xlserve::gateway {

class UpstreamPool {
 public:
  explicit UpstreamPool(const std::vector<std::string>& addresses);

  struct Lease {
    int index = -1;
    v1::XlServe::Stub* stub = nullptr;
    std::string address;
  };
  // A replica for a request; `affinity_key` (session id or user) pins the choice. index -1
  // when every replica is down.
  Lease Acquire(const std::string& affinity_key);
  // Ends a lease; `failed` (the replica did not answer) takes it out of rotation briefly and
  // drops the affinities that pointed at it.
  void Release(const Lease& lease, bool failed);

  int size() const { return static_cast<int>(replicas_.size()); }
  v1::XlServe::Stub* stub(int i) { return replicas_[i]->stub.get(); }
  const std::string& address(int i) const { return replicas_[i]->address; }

 private:
  struct Replica {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::XlServe::Stub> stub;
    int in_flight = 0;
    std::chrono::steady_clock::time_point down_until{};
  };
  bool Up(const Replica& r, std::chrono::steady_clock::time_point now) const { return now >= r.down_until; }

  std::mutex mu_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::map<std::string, int> affinity_;  // bounded: cleared when it grows past kMaxAffinities
};

}  // namespace xlserve::gateway
