// HttpListener: an httplib::Server whose connections are managed here rather than by httplib's
// one-thread-per-connection loop, so that slow or idle clients cannot starve the others.
//
//  - A connection reaches a worker thread only once its request headers are complete: one
//    poll() thread waits for every connection that is between requests, each with a deadline
//    (header_timeout for a request that has begun, idle_timeout between keep-alive requests).
//  - The request line and headers are bounded by max_header_bytes (431 beyond), the body must
//    arrive within body_timeout, and each write must make progress within write_timeout.
//  - At most max_connections are open (idle ones included); more are refused at once with 503.
//  - The port is bound exclusively (no SO_REUSEPORT, so a second process fails to bind instead
//    of sharing it) with a listen backlog that absorbs bursts of connects.
//
// Routes and hooks are registered as on httplib::Server (Get, Post, set_pre_routing_handler, ...)
// before Start(). Handlers run on worker threads.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace xlserve::net {

struct HttpLimits {
  int workers = 16;           // requests served at once (a streaming response holds one)
  int max_connections = 256;  // open connections, idle ones included
  std::chrono::milliseconds header_timeout{10'000};  // first byte of a request to its blank line
  std::chrono::milliseconds idle_timeout{15'000};    // between keep-alive requests
  std::chrono::milliseconds body_timeout{30'000};    // the whole request body
  std::chrono::milliseconds write_timeout{30'000};   // without any progress writing a response
  size_t max_header_bytes = 16 << 10;
  int keep_alive_requests = 100;  // per connection, then it is closed
  int backlog = 1024;
};

class HttpListener : public httplib::Server {
 public:
  explicit HttpListener(const HttpLimits& limits);
  ~HttpListener() override;

  // Binds host:port (port 0: any free port) and starts serving. Returns the bound port;
  // UNAVAILABLE when the address cannot be bound (taken, not local, unparsable).
  absl::StatusOr<int> Start(const std::string& host, int port);
  // Stops accepting, closes connections that wait between requests, and returns once every
  // request being served has finished. Idempotent.
  void Stop();

  int open_connections() const { return open_connections_.load(); }

  // For handlers, on the worker thread serving a request: the client's socket (-1 elsewhere),
  // so a long handler can notice that its client has gone.
  static int ClientSocket();
  // Ends the connection after this response (and says so in it): for answers sent without
  // reading the request body, whose bytes would otherwise be parsed as the next request.
  static void CloseAfterResponse(httplib::Response& res);

 private:
  struct Connection;
  class ConnectionStream;
  class InlineTaskQueue;

  // Called by httplib's accept loop for each new socket; hands it to the header wait.
  bool process_and_close_socket(socket_t sock) override;

  void WaitLoop();
  bool ReadWhileWaiting(Connection& conn, bool* ready);
  void WorkerLoop();
  void Serve(std::unique_ptr<Connection> conn);
  void ToWaiting(std::unique_ptr<Connection> conn);
  void Close(std::unique_ptr<Connection> conn);
  // Closes our side and discards what the client still sends for a moment, so that it reads
  // the response before a reset (closing with unread input sends one).
  void Linger(std::unique_ptr<Connection> conn);
  void Wake();

  static thread_local Connection* current_;  // the connection this worker thread serves

  const HttpLimits limits_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> open_connections_{0};
  std::atomic<bool> accept_done_{false};
  bool started_ = false;
  bool stopped_ = false;
  int wake_fd_ = -1;  // eventfd that interrupts the waiting thread's poll()

  std::mutex mu_;
  std::condition_variable ready_cv_;
  std::vector<std::unique_ptr<Connection>> incoming_;  // to the waiting thread
  std::deque<std::unique_ptr<Connection>> ready_;      // headers complete, for a worker

  std::thread accept_thread_;
  std::thread wait_thread_;
  std::vector<std::thread> workers_;
};

}  // namespace xlserve::net
