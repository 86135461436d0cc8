#include "net/http_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace xlserve::net {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

HttpLimits SmallLimits() {
  HttpLimits l;
  l.workers = 2;
  l.max_connections = 64;
  l.header_timeout = milliseconds(500);
  l.idle_timeout = milliseconds(500);
  l.body_timeout = milliseconds(500);
  l.write_timeout = milliseconds(500);
  return l;
}

// A listener on a free loopback port answering GET /ping with "pong", plus `routes`.
struct Running {
  explicit Running(const HttpLimits& limits, const std::function<void(HttpListener&)>& routes = nullptr)
      : http(limits) {
    http.Get("/ping", [](const httplib::Request&, httplib::Response& res) { res.set_content("pong", "text/plain"); });
    if (routes) routes(http);
    absl::StatusOr<int> bound = http.Start("127.0.0.1", 0);
    REQUIRE(bound.ok());
    port = *bound;
  }
  HttpListener http;
  int port = 0;
};

// A raw client socket, for clients that misbehave.
int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  return fd;
}

void Send(int fd, const std::string& s) { (void)::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }

// Everything the server sends until it closes the connection or `timeout` passes.
std::string ReadUntilClosed(int fd, milliseconds timeout) {
  std::string out;
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return out + (n == 0 ? "<closed>" : "<reset>");
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool Ping(int port, milliseconds timeout) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(std::chrono::duration_cast<std::chrono::seconds>(timeout).count() + 1);
  client.set_read_timeout(timeout);
  auto res = client.Get("/ping");
  return res && res->status == 200 && res->body == "pong";
}

TEST_CASE("a port in use is refused, not shared") {
  Running first(SmallLimits());
  HttpListener second(SmallLimits());
  absl::StatusOr<int> bound = second.Start("127.0.0.1", first.port);
  REQUIRE_FALSE(bound.ok());
  CHECK(bound.status().code() == absl::StatusCode::kUnavailable);
  HttpListener bad_host(SmallLimits());
  CHECK_FALSE(bad_host.Start("not an address!", 0).ok());
  CHECK(Ping(first.port, milliseconds(2000)));
}

TEST_CASE("slow and idle clients do not hold the workers") {
  Running server(SmallLimits());
  // Ten times as many slow clients as workers, each dripping one header byte every 100 ms.
  std::vector<int> slow;
  for (int i = 0; i < 20; ++i) slow.push_back(Connect(server.port));
  std::vector<int> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(Connect(server.port));
  std::atomic<bool> done{false};
  std::thread drip([&] {
    const std::string request = "GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa";
    for (size_t i = 0; i < request.size() && !done; ++i) {
      for (int fd : slow) Send(fd, request.substr(i, 1));
      std::this_thread::sleep_for(milliseconds(100));
    }
  });
  std::this_thread::sleep_for(milliseconds(150));
  const auto start = Clock::now();
  CHECK(Ping(server.port, milliseconds(2000)));
  CHECK(Clock::now() - start < milliseconds(400));
  // The header timeout ends the slow ones with 408, the idle ones silently.
  for (int fd : slow) {
    const std::string got = ReadUntilClosed(fd, milliseconds(2000));
    CHECK(got.rfind("HTTP/1.1 408", 0) == 0);
    CHECK(got.find("<closed>") != std::string::npos);
  }
  for (int fd : idle) CHECK(ReadUntilClosed(fd, milliseconds(2000)) == "<closed>");
  done = true;
  drip.join();
  for (int fd : slow) ::close(fd);
  for (int fd : idle) ::close(fd);
  const auto end = Clock::now() + milliseconds(1000);
  while (server.http.open_connections() > 0 && Clock::now() < end) std::this_thread::sleep_for(milliseconds(10));
  CHECK(server.http.open_connections() == 0);
}

TEST_CASE("a body that does not arrive in time frees its worker") {
  HttpLimits limits = SmallLimits();
  limits.workers = 1;
  Running server(limits, [](HttpListener& http) {
    http.Post("/echo", [](const httplib::Request& req, httplib::Response& res) { res.set_content(req.body, "text/plain"); });
  });
  const int fd = Connect(server.port);
  Send(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b");
  const auto start = Clock::now();
  const std::string got = ReadUntilClosed(fd, milliseconds(3000));
  CHECK(Clock::now() - start < milliseconds(1500));
  CHECK(got.find("<closed>") != std::string::npos);
  CHECK(got.find("only ten b") == std::string::npos);
  ::close(fd);
  CHECK(Ping(server.port, milliseconds(2000)));
}

TEST_CASE("connections beyond the limit are refused at once with 503") {
  HttpLimits limits = SmallLimits();
  limits.max_connections = 4;
  limits.idle_timeout = milliseconds(5000);
  limits.header_timeout = milliseconds(5000);
  Running server(limits);
  std::vector<int> held;
  for (int i = 0; i < 4; ++i) held.push_back(Connect(server.port));
  const auto end = Clock::now() + milliseconds(1000);
  while (server.http.open_connections() < 4 && Clock::now() < end) std::this_thread::sleep_for(milliseconds(5));
  const int extra = Connect(server.port);
  CHECK(ReadUntilClosed(extra, milliseconds(2000)).rfind("HTTP/1.1 503", 0) == 0);
  ::close(extra);
  ::close(held.back());
  held.pop_back();
  std::this_thread::sleep_for(milliseconds(100));
  CHECK(Ping(server.port, milliseconds(2000)));
  for (int fd : held) ::close(fd);
}

TEST_CASE("oversized request headers get 431") {
  Running server(SmallLimits());
  const int fd = Connect(server.port);
  Send(fd, "GET /ping HTTP/1.1\r\nX-Big: " + std::string(20000, 'a'));
  CHECK(ReadUntilClosed(fd, milliseconds(2000)).rfind("HTTP/1.1 431", 0) == 0);
  ::close(fd);
}

TEST_CASE("keep-alive and pipelined requests are all answered") {
  Running server(SmallLimits());
  httplib::Client client("127.0.0.1", server.port);
  client.set_keep_alive(true);
  for (int i = 0; i < 3; ++i) {
    auto res = client.Get("/ping");
    REQUIRE(res);
    CHECK(res->body == "pong");
  }
  const int fd = Connect(server.port);
  Send(fd, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string got = ReadUntilClosed(fd, milliseconds(2000));
  size_t pongs = 0;
  for (size_t at = got.find("pong"); at != std::string::npos; at = got.find("pong", at + 1)) ++pongs;
  CHECK(pongs == 2);
  ::close(fd);
}

TEST_CASE("a burst of connects beyond httplib's backlog of 5 is answered, not reset") {
  HttpLimits limits = SmallLimits();
  limits.workers = 4;
  limits.max_connections = 512;
  Running server(limits);
  std::vector<int> fds;
  for (int i = 0; i < 200; ++i) fds.push_back(Connect(server.port));
  for (int fd : fds) Send(fd, "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  int answered = 0;
  for (int fd : fds) {
    answered += ReadUntilClosed(fd, milliseconds(5000)).find("pong") != std::string::npos;
    ::close(fd);
  }
  CHECK(answered == 200);
}

TEST_CASE("an answer given without reading the body reaches the client") {
  Running server(SmallLimits(), [](HttpListener& http) {
    http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
      if (req.path != "/upload") return httplib::Server::HandlerResponse::Unhandled;
      res.status = 413;
      res.set_content("too large", "text/plain");
      HttpListener::CloseAfterResponse(res);
      return httplib::Server::HandlerResponse::Handled;
    });
  });
  const int fd = Connect(server.port);
  Send(fd, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n");
  std::thread sender([fd] {
    const std::string block(64 << 10, 'x');
    for (int i = 0; i < 32; ++i) Send(fd, block);
  });
  const std::string got = ReadUntilClosed(fd, milliseconds(4000));
  sender.join();
  CHECK(got.rfind("HTTP/1.1 413", 0) == 0);
  CHECK(got.find("Connection: close") != std::string::npos);
  ::close(fd);
}

TEST_CASE("a handler's exception is a plain 500 without its text") {
  std::atomic<int> client_socket{-2};
  Running server(SmallLimits(), [&](HttpListener& http) {
    http.Get("/throw", [](const httplib::Request&, httplib::Response&) -> void {
      throw std::runtime_error("secret internals");
    });
    http.Get("/socket", [&](const httplib::Request&, httplib::Response& res) {
      client_socket = HttpListener::ClientSocket();
      res.set_content("ok", "text/plain");
    });
  });
  httplib::Client client("127.0.0.1", server.port);
  auto res = client.Get("/throw");
  REQUIRE(res);
  CHECK(res->status == 500);
  CHECK_FALSE(res->has_header("EXCEPTION_WHAT"));
  CHECK(res->body.find("secret") == std::string::npos);
  REQUIRE(client.Get("/socket"));
  CHECK(client_socket >= 0);
  CHECK(HttpListener::ClientSocket() == -1);
}

}  // namespace
}  // namespace xlserve::net
