// The gateway's side of an upstream call: what an HTTP client is told for each gRPC failure,
// and the hang-up watch that cancels calls whose client has gone.
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "gateway/active_calls.h"
#include "gateway/upstream_call.h"

namespace xlserve::gateway {
namespace {

TEST_CASE("gRPC failures become HTTP statuses without transport details") {
  const HttpError busy = ToHttpError(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"), "1500");
  CHECK(busy.status == 429);
  CHECK(busy.retry_after_s == 2);
  // gRPC reports a message over its size limit as RESOURCE_EXHAUSTED too, without the trailer.
  const HttpError too_large = ToHttpError(
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "Received message larger than max (9 vs. 8)"), "");
  CHECK(too_large.status == 413);
  CHECK(too_large.message.find("max (") == std::string::npos);
  const HttpError down = ToHttpError(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "failed to connect to all addresses; ipv4:10.1.2.3:50051"), "");
  CHECK(down.status == 503);
  CHECK(down.retry_after_s > 0);
  CHECK(down.message.find("10.1.2.3") == std::string::npos);
  CHECK(ToHttpError(grpc::Status(grpc::StatusCode::INTERNAL, "std::bad_alloc at scheduler.cc:12"), "").message ==
        "internal error");
  CHECK(ToHttpError(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no key"), "").status == 502);
  const HttpError bad = ToHttpError(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "max_tokens must be in [1, 4096]"), "");
  CHECK(bad.status == 400);
  CHECK(bad.message == "max_tokens must be in [1, 4096]");
}

TEST_CASE("a client that hangs up is seen, one that stays is not") {
  ActiveCalls calls;
  int stays[2], leaves[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, stays) == 0);
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, leaves) == 0);
  grpc::ClientContext a, b;
  const uint64_t staying = calls.Add(&a, stays[0]);
  const uint64_t leaving = calls.Add(&b, leaves[0]);
  CHECK(calls.size() == 2);
  (void)::write(stays[1], "x", 1);  // input is not a hang-up
  ::close(leaves[1]);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(calls.Remove(leaving));
  CHECK_FALSE(calls.Remove(staying));
  CHECK(calls.size() == 0);
  ::close(stays[0]);
  ::close(stays[1]);
  ::close(leaves[0]);
}

}  // namespace
}  // namespace xlserve::gateway
