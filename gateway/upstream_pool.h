// UpstreamPool: the xlserve replicas behind the gateway. Picks the least-loaded usable
// replica with room, keeps a session on the replica that holds its state (affinity), takes a
// replica out of rotation for a while after it fails to answer, and probes every replica's
// gRPC health (a draining server is not usable) and capacity in the background. Thread-safe.
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

#include <grpcpp/security/credentials.h>

#include "proto/xlserve/v1/xlserve.grpc.pb.h"

namespace xlserve::gateway {

struct UpstreamOptions {
  std::string api_key;     // sent as "authorization: Bearer KEY" on every call; empty: none
  std::string tls_ca_pem;  // root certificates for TLS to the replicas; empty: plaintext
  // Requests (counted by their n) a replica takes at once; 0: its max_num_seqs, so that an
  // admitted request finds a free slot instead of waiting in the replica's queue.
  int max_in_flight = 0;
  std::chrono::milliseconds probe_interval{2000};
  std::chrono::milliseconds resolve_interval{5000};
};

class UpstreamPool {
 public:
  UpstreamPool(const std::vector<std::string>& addresses, const UpstreamOptions& options);
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // Probes every replica once, then keeps resolving and probing in the background until
  // destruction.
  void StartProbing();

  struct Replica;
  enum class Verdict { kOk, kBusy, kUnavailable };
  struct Lease {
    int index = -1;
    v1::XlServe::Stub* stub = nullptr;
    int weight = 0;
    Replica* replica = nullptr;  // the pool's own handle for Release
  };
  // A replica for a request taking `weight` slots; `affinity_key` (session id or user) pins
  // the choice. index -1 when every usable replica is full (kBusy) or none is usable.
  Lease Acquire(const std::string& affinity_key, int weight, Verdict* verdict);
  // Ends a lease; `failed` (the replica did not answer) takes it out of rotation briefly and
  // drops the affinities that pointed at it. Valid also after the replica left the rotation.
  void Release(const Lease& lease, bool failed);

  // A context for one call: `deadline` and the upstream credentials.
  std::unique_ptr<grpc::ClientContext> NewContext(std::chrono::system_clock::time_point deadline) const;

  // The replicas in rotation now, ordered by address. A stub stays valid as long as the pool;
  // an index past the end (replicas left since size() was read) gives a stub whose calls fail
  // at once with UNAVAILABLE.
  int size() const;
  int usable() const;
  int in_flight() const;
  v1::XlServe::Stub* stub(int i);
  std::string address(int i) const;

  struct Replica {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::XlServe::Stub> stub;
    int in_flight = 0;
    int capacity = 0;     // max_num_seqs reported by the replica; 0: not known yet
    bool serving = true;  // its last health probe said SERVING (optimistic until probed)
    std::chrono::steady_clock::time_point down_until{};
  };

 private:
  struct Discovery {
    std::string host;
    std::string port;
    std::vector<std::string> addresses;  // of the last successful resolution
  };

  bool Usable(const Replica& r, std::chrono::steady_clock::time_point now) const {
    return r.serving && now >= r.down_until;
  }
  int Capacity(const Replica& r) const;
  std::unique_ptr<Replica> MakeReplica(const std::string& target, const std::string& address) const;
  Replica* ReplicaFor(const std::string& address);  // mu_ held
  void Resolve();          // every discovery once; updates the rotation
  void RebuildRotation();  // mu_ held
  void ProbeAll();
  void BackgroundLoop();

  const UpstreamOptions options_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  mutable std::mutex mu_;
  // Every replica ever seen, never freed before the pool, so that leases and stubs stay valid.
  std::map<std::string, std::unique_ptr<Replica>> known_;
  std::vector<std::string> fixed_;     // HOST:PORT upstreams
  std::vector<Discovery> discovered_;  // dns:/// upstreams
  std::vector<Replica*> rotation_;
  std::unique_ptr<Replica> departed_;  // stands in for indices past the end of the rotation
  std::map<std::string, Replica*> affinity_;  // bounded: cleared when it grows past kMaxAffinities

  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread background_;
};

}  // namespace xlserve::gateway
