// UpstreamPool: the xlserve replicas behind the gateway. Picks the least-loaded healthy
// replica, keeps a session on the replica that holds its state (affinity), and takes a replica
// out of rotation for a while after it fails to answer. Thread-safe.
//
// An upstream is HOST:PORT (one replica; gRPC resolves HOST itself) or dns:///NAME:PORT: one
// replica per address NAME resolves to, resolved again every `resolve_interval`, so replicas
// behind a name with many records (a Kubernetes headless Service) join and leave the rotation
// without a restart. A failed resolution keeps the replicas of the last one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proto/xlserve/v1/xlserve.grpc.pb.h"

namespace xlserve::gateway {

class UpstreamPool {
 public:
  explicit UpstreamPool(const std::vector<std::string>& addresses,
                        std::chrono::milliseconds resolve_interval = std::chrono::seconds(5));
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  struct Replica;
  struct Lease {
    int index = -1;
    v1::XlServe::Stub* stub = nullptr;
    std::string address;
    Replica* replica = nullptr;  // the pool's own handle for Release
  };
  // A replica for a request; `affinity_key` (session id or user) pins the choice. index -1
  // when every replica is down or none is known.
  Lease Acquire(const std::string& affinity_key);
  // Ends a lease; `failed` (the replica did not answer) takes it out of rotation briefly and
  // drops the affinities that pointed at it. Valid also after the replica left the rotation.
  void Release(const Lease& lease, bool failed);

  // The replicas in rotation now, ordered by address. A stub stays valid as long as the pool;
  // an index past the end (replicas left since size() was read) gives a stub whose calls fail
  // at once with UNAVAILABLE.
  int size() const;
  v1::XlServe::Stub* stub(int i);
  std::string address(int i) const;

  struct Replica {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::XlServe::Stub> stub;
    int in_flight = 0;
    std::chrono::steady_clock::time_point down_until{};
  };

 private:
  struct Discovery {
    std::string host;
    std::string port;
    std::vector<std::string> addresses;  // of the last successful resolution
  };

  bool Up(const Replica& r, std::chrono::steady_clock::time_point now) const { return now >= r.down_until; }
  Replica* ReplicaFor(const std::string& address);  // mu_ held
  void Resolve();          // every discovery once; updates the rotation
  void RebuildRotation();  // mu_ held
  void ResolveLoop(std::chrono::milliseconds interval);

  mutable std::mutex mu_;
  // Every replica ever seen, never freed before the pool, so that leases and stubs stay valid.
  std::map<std::string, std::unique_ptr<Replica>> known_;
  std::vector<std::string> fixed_;      // HOST:PORT upstreams
  std::vector<Discovery> discovered_;   // dns:/// upstreams
  std::vector<Replica*> rotation_;
  std::unique_ptr<Replica> departed_;   // stands in for indices past the end of the rotation
  std::map<std::string, Replica*> affinity_;  // bounded: cleared when it grows past kMaxAffinities

  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread resolver_;
};

}  // namespace xlserve::gateway
