// ActiveCalls: the upstream calls the gateway has open, each with the socket of the HTTP client
// it serves. A watcher thread cancels a call whose client hangs up, so that a request stops
// holding a replica's slot as soon as nobody waits for it: streaming or not, before its first
// token or after. Shutdown cancels every call. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>

namespace grpc {
class ClientContext;
}

namespace xlserve::gateway {

class ActiveCalls {
 public:
  ActiveCalls();
  ~ActiveCalls();

  // Registers a call; `context` must stay alive until Remove(). `client_fd` -1: no socket to
  // watch. After CancelAll(), a new call is cancelled at once.
  uint64_t Add(grpc::ClientContext* context, int client_fd);
  // Unregisters a call; returns whether its client was seen hanging up.
  bool Remove(uint64_t id);
  void CancelAll();
  int size() const;

 private:
  struct Call {
    grpc::ClientContext* context;
    int fd;
    bool client_gone = false;
  };
  void WatchLoop();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Call> calls_;
  uint64_t next_id_ = 1;
  bool cancelled_ = false;
  bool stopping_ = false;
  std::thread watcher_;
};

}  // namespace xlserve::gateway
