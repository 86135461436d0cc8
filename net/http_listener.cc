#include "net/http_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string_view>

#include "spdlog/spdlog.h"

namespace xlserve::net {
namespace {

using Clock = std::chrono::steady_clock;

// Bytes taken from the socket per read once a request's headers have been consumed.
constexpr size_t kReadChunk = 16 << 10;
// How long a connection closed without reading its request body keeps draining it, so that
// the client reads the response before it sees a reset.
constexpr std::chrono::seconds kLingerTime{2};

// A status-only reply for answers given outside httplib (before a request was parsed). The
// socket is fresh or idle, so its send buffer has room: never block the caller on it.
void SendStatus(int fd, std::string_view status_line) {
  const std::string reply = "HTTP/1.1 " + std::string(status_line) +
                            "\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n";
  (void)::send(fd, reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

int MillisUntil(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, INT_MAX));
}

// Waits until `fd` is ready for `events` or `deadline` passes. A hang-up or error counts as
// ready, so that the following read or write reports it.
bool PollUntil(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, MillisUntil(deadline));
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
  }
}

void SocketAddress(int (*query)(int, sockaddr*, socklen_t*), int fd, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (query(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return;
  char host[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  ip = host;
}

}  // namespace

struct HttpListener::Connection {
  explicit Connection(int fd) : fd(fd) {}

  std::string_view Unread() const { return std::string_view(buffer).substr(consumed); }
  bool HeadersComplete() const { return Unread().find("\r\n\r\n") != std::string_view::npos; }
  void Compact() {
    buffer.erase(0, consumed);
    consumed = 0;
  }

  const int fd;
  std::string buffer;  // received from the socket; bytes before `consumed` were parsed
  size_t consumed = 0;
  Clock::time_point deadline;     // while waiting: when to give up on it
  bool between_requests = false;  // waiting for the first byte of a keep-alive request
  bool draining = false;          // response sent, discarding input until the client closes
  bool close_after_response = false;
};

thread_local HttpListener::Connection* HttpListener::current_ = nullptr;

// httplib reads and writes a request through this: buffered reads bounded by the request's
// deadline, writes bounded by the write timeout. The socket stays blocking; poll() bounds
// every wait.
class HttpListener::ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(Connection& conn, std::chrono::milliseconds write_timeout)
      : conn_(conn), write_timeout_(write_timeout) {}

  void set_read_deadline(Clock::time_point deadline) { read_deadline_ = deadline; }

  bool is_readable() const override {
    return conn_.consumed < conn_.buffer.size() || PollUntil(conn_.fd, POLLIN, read_deadline_);
  }
  bool is_writable() const override { return PollUntil(conn_.fd, POLLOUT, Clock::now() + write_timeout_); }

  ssize_t read(char* ptr, size_t size) override {
    if (conn_.consumed == conn_.buffer.size()) {
      conn_.buffer.clear();
      conn_.consumed = 0;
      if (!PollUntil(conn_.fd, POLLIN, read_deadline_)) return -1;
      conn_.buffer.resize(kReadChunk);
      ssize_t n;
      do {
        n = ::recv(conn_.fd, conn_.buffer.data(), kReadChunk, 0);
      } while (n < 0 && errno == EINTR);
      conn_.buffer.resize(n > 0 ? static_cast<size_t>(n) : 0);
      if (n <= 0) return n;
    }
    const size_t n = std::min(size, conn_.buffer.size() - conn_.consumed);
    std::memcpy(ptr, conn_.buffer.data() + conn_.consumed, n);
    conn_.consumed += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do {
      n = ::send(conn_.fd, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;  // httplib retries
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    SocketAddress(::getpeername, conn_.fd, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    SocketAddress(::getsockname, conn_.fd, ip, port);
  }
  socket_t socket() const override { return conn_.fd; }

 private:
  Connection& conn_;
  const std::chrono::milliseconds write_timeout_;
  Clock::time_point read_deadline_;
};

// httplib's accept loop gives each new socket to a task queue; running the task at once lets
// process_and_close_socket() below take the socket over without a thread per connection.
class HttpListener::InlineTaskQueue final : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

HttpListener::HttpListener(const HttpLimits& limits) : limits_(limits) {
  new_task_queue = [] { return new InlineTaskQueue(); };
  // SO_REUSEADDR only: a restart may bind a port still in TIME_WAIT, while binding a port that
  // another process listens on fails. (httplib's default adds SO_REUSEPORT, with which both
  // processes bind and the kernel splits the connections between them.)
  set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  set_keep_alive_max_count(static_cast<size_t>(limits.keep_alive_requests));
  set_keep_alive_timeout(std::chrono::ceil<std::chrono::seconds>(limits.idle_timeout).count());
  // httplib's default answers an exception with its text in an EXCEPTION_WHAT header.
  set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      spdlog::error("HTTP {} {}: handler failed: {}", req.method, req.path, e.what());
    } catch (...) {
      spdlog::error("HTTP {} {}: handler failed", req.method, req.path);
    }
    res.status = 500;
    res.set_content("internal error\n", "text/plain");
  });
}

HttpListener::~HttpListener() { Stop(); }

absl::StatusOr<int> HttpListener::Start(const std::string& host, int port) {
  const int bound = port == 0 ? bind_to_any_port(host) : (bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError("cannot listen on " + host + ":" + std::to_string(port) +
                                  " (address in use, not local, or not an address)");
  }
  // httplib listens with a backlog of 5; connects beyond it in a burst are dropped or reset
  // before anything can answer them. Listening again on the bound socket raises it.
  ::listen(svr_sock_, limits_.backlog);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return absl::InternalError(std::string("eventfd: ") + std::strerror(errno));
  started_ = true;
  wait_thread_ = std::thread([this] { WaitLoop(); });
  for (int i = 0; i < std::max(1, limits_.workers); ++i) workers_.emplace_back([this] { WorkerLoop(); });
  accept_thread_ = std::thread([this] {
    listen_after_bind();
    accept_done_ = true;
  });
  return bound;
}

void HttpListener::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  stopping_ = true;
  // stop() closes the listening socket only once the accept loop has begun.
  while (!is_running() && !accept_done_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  stop();
  accept_thread_.join();
  Wake();
  wait_thread_.join();
  ready_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  std::deque<std::unique_ptr<Connection>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(ready_);
  }
  for (auto& conn : left) Close(std::move(conn));
  ::close(wake_fd_);
}

int HttpListener::ClientSocket() { return current_ ? current_->fd : -1; }

void HttpListener::CloseAfterResponse(httplib::Response& res) {
  if (current_) current_->close_after_response = true;
  res.set_header("Connection", "close");
}

bool HttpListener::process_and_close_socket(socket_t sock) {
  if (stopping_ || open_connections_.load() >= limits_.max_connections) {
    SendStatus(sock, "503 Service Unavailable");
    ::close(sock);
    return false;
  }
  ++open_connections_;
  auto conn = std::make_unique<Connection>(sock);
  conn->deadline = Clock::now() + limits_.header_timeout;
  ToWaiting(std::move(conn));
  return true;
}

void HttpListener::Wake() {
  const uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof(one));
}

void HttpListener::ToWaiting(std::unique_ptr<Connection> conn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      incoming_.push_back(std::move(conn));
    }
  }
  if (conn) return Close(std::move(conn));
  Wake();
}

void HttpListener::Close(std::unique_ptr<Connection> conn) {
  ::shutdown(conn->fd, SHUT_RDWR);
  ::close(conn->fd);
  --open_connections_;
}

void HttpListener::Linger(std::unique_ptr<Connection> conn) {
  ::shutdown(conn->fd, SHUT_WR);
  conn->draining = true;
  conn->deadline = Clock::now() + kLingerTime;
  ToWaiting(std::move(conn));
}

// Reads what a waiting connection has sent. Returns whether it stays open; sets `ready` when
// its request headers are complete.
bool HttpListener::ReadWhileWaiting(Connection& conn, bool* ready) {
  if (conn.draining) {
    char discard[4096];
    const ssize_t n = ::recv(conn.fd, discard, sizeof(discard), MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
  }
  conn.Compact();
  const size_t had = conn.buffer.size();
  const size_t room = limits_.max_header_bytes - std::min(had, limits_.max_header_bytes);
  if (room == 0) return false;
  conn.buffer.resize(had + room);
  const ssize_t n = ::recv(conn.fd, conn.buffer.data() + had, room, MSG_DONTWAIT);
  conn.buffer.resize(had + static_cast<size_t>(std::max<ssize_t>(n, 0)));
  if (n == 0) return false;
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  if (conn.between_requests) {
    conn.between_requests = false;
    conn.deadline = Clock::now() + limits_.header_timeout;
  }
  *ready = conn.HeadersComplete();
  if (!*ready && conn.buffer.size() >= limits_.max_header_bytes) {
    SendStatus(conn.fd, "431 Request Header Fields Too Large");
    conn.draining = true;
    conn.deadline = Clock::now() + kLingerTime;
    ::shutdown(conn.fd, SHUT_WR);
  }
  return true;
}

void HttpListener::WaitLoop() {
  std::vector<std::unique_ptr<Connection>> waiting;
  std::vector<pollfd> fds;
  while (!stopping_) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& conn : incoming_) waiting.push_back(std::move(conn));
      incoming_.clear();
    }
    Clock::time_point next = Clock::now() + std::chrono::seconds(1);
    fds.assign(1, pollfd{wake_fd_, POLLIN, 0});
    for (const auto& conn : waiting) {
      fds.push_back(pollfd{conn->fd, POLLIN, 0});
      next = std::min(next, conn->deadline);
    }
    if (::poll(fds.data(), fds.size(), MillisUntil(next)) < 0 && errno != EINTR) {
      spdlog::error("HTTP listener: poll failed: {}", std::strerror(errno));
      break;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t count;
      (void)::read(wake_fd_, &count, sizeof(count));
    }
    const auto now = Clock::now();
    std::vector<std::unique_ptr<Connection>> still;
    for (size_t i = 0; i < waiting.size(); ++i) {
      std::unique_ptr<Connection>& conn = waiting[i];
      bool ready = false;
      if (fds[i + 1].revents != 0) {
        if (!ReadWhileWaiting(*conn, &ready)) {
          Close(std::move(conn));
          continue;
        }
      }
      if (ready) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          ready_.push_back(std::move(conn));
        }
        ready_cv_.notify_one();
      } else if (now >= conn->deadline) {
        // A request begun but not finished in time hears why; an idle connection just closes.
        if (!conn->draining && !conn->Unread().empty()) SendStatus(conn->fd, "408 Request Timeout");
        Close(std::move(conn));
      } else {
        still.push_back(std::move(conn));
      }
    }
    waiting = std::move(still);
  }
  for (auto& conn : waiting) Close(std::move(conn));
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& conn : incoming_) Close(std::move(conn));
  incoming_.clear();
}

void HttpListener::WorkerLoop() {
  for (;;) {
    std::unique_ptr<Connection> conn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_cv_.wait(lock, [this] { return stopping_ || !ready_.empty(); });
      if (stopping_) return;
      conn = std::move(ready_.front());
      ready_.pop_front();
    }
    Serve(std::move(conn));
  }
}

void HttpListener::Serve(std::unique_ptr<Connection> conn) {
  ConnectionStream stream(*conn, limits_.write_timeout);
  current_ = conn.get();
  for (int served = 1;; ++served) {
    conn->close_after_response = false;
    // The headers are buffered already (the wait saw them complete): this bounds the body.
    stream.set_read_deadline(Clock::now() + limits_.body_timeout);
    const bool last = served >= limits_.keep_alive_requests || stopping_;
    bool client_closes = false;
    const bool ok = process_request(stream, last, client_closes, nullptr);
    if (ok && conn->close_after_response) break;
    if (!ok || last || client_closes || stopping_) {
      current_ = nullptr;
      return Close(std::move(conn));
    }
    if (conn->HeadersComplete()) continue;  // a pipelined request
    current_ = nullptr;
    conn->Compact();
    conn->between_requests = conn->buffer.empty();
    conn->deadline = Clock::now() + (conn->between_requests ? limits_.idle_timeout : limits_.header_timeout);
    return ToWaiting(std::move(conn));
  }
  current_ = nullptr;
  Linger(std::move(conn));
}

}  // namespace xlserve::net
