// UpstreamPool: the xlserve replicas behind the gateway. Picks the least-loaded usable
// replica with room, keeps a session on the replica that holds its state (affinity), takes a
// replica out of rotation for a while after it fails to answer, and probes every replica's
// gRPC health (a draining server is not usable) and capacity in the background. Thread-safe.
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

struct UpstreamOptions {
  std::string api_key;     // sent as "authorization: Bearer KEY" on every call; empty: none
  std::string tls_ca_pem;  // root certificates for TLS to the replicas; empty: plaintext
  // Requests (counted by their n) a replica takes at once; 0: its max_num_seqs, so that an
  // admitted request finds a free slot instead of waiting in the replica's queue.
  int max_in_flight = 0;
  std::chrono::milliseconds probe_interval{2000};
};

class UpstreamPool {
 public:
  UpstreamPool(const std::vector<std::string>& addresses, const UpstreamOptions& options);
  ~UpstreamPool();

  // Probes every replica once, then keeps probing in the background until destruction.
  void StartProbing();

  enum class Verdict { kOk, kBusy, kUnavailable };
  struct Lease {
    int index = -1;
    v1::XlServe::Stub* stub = nullptr;
    int weight = 0;
  };
  // A replica for a request taking `weight` slots; `affinity_key` (session id or user) pins
  // the choice. index -1 when every usable replica is full (kBusy) or none is usable.
  Lease Acquire(const std::string& affinity_key, int weight, Verdict* verdict);
  // Ends a lease; `failed` (the replica did not answer) takes it out of rotation briefly and
  // drops the affinities that pointed at it.
  void Release(const Lease& lease, bool failed);

  // A context for one call: `deadline` and the upstream credentials.
  std::unique_ptr<grpc::ClientContext> NewContext(std::chrono::system_clock::time_point deadline) const;

  int size() const { return static_cast<int>(replicas_.size()); }
  int usable() const;
  int in_flight() const;
  v1::XlServe::Stub* stub(int i) { return replicas_[i]->stub.get(); }

 private:
  struct Replica {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::XlServe::Stub> stub;
    int in_flight = 0;
    int capacity = 0;      // max_num_seqs reported by the replica; 0: not known yet
    bool serving = true;   // its last health probe said SERVING (optimistic until probed)
    std::chrono::steady_clock::time_point down_until{};
  };
  bool Usable(const Replica& r, std::chrono::steady_clock::time_point now) const {
    return r.serving && now >= r.down_until;
  }
  int Capacity(const Replica& r) const;
  void ProbeAll();
  void ProbeLoop();

  const UpstreamOptions options_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::map<std::string, int> affinity_;  // bounded: cleared when it grows past kMaxAffinities
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread prober_;
};

}  // namespace xlserve::gateway
