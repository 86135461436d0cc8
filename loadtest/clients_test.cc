#include <httplib.h>

#include <catch2/catch.hpp>
#include <thread>

#include "nlohmann/json.hpp"
#include "loadtest/grpc_load_client.h"
#include "loadtest/openai_load_client.h"
#include "loadtest/sse_parser.h"

namespace xlserve::loadtest {
namespace {

std::vector<std::string> ParseAll(const std::vector<std::string>& pieces) {
  std::vector<std::string> events;
  SseParser parser([&](const std::string& data) { events.push_back(data); });
  for (const std::string& p : pieces) parser.Feed(p);
  return events;
}

TEST_CASE("the SSE parser reassembles events whatever the chunking") {
  const std::string stream = "data: {\"a\":1}\n\n: keep-alive\n\nevent: x\ndata: line1\ndata: line2\r\n\r\ndata: [DONE]\n\n";
  const std::vector<std::string> expected = {"{\"a\":1}", "line1\nline2", "[DONE]"};
  CHECK(ParseAll({stream}) == expected);
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  CHECK(ParseAll(bytes) == expected);
  CHECK(ParseAll({"data: unfinished\n"}).empty());  // no blank line yet: not an event
}

TEST_CASE("completions URLs accept a base, a /v1 base or the full path") {
  CHECK(ParseCompletionsUrl("http://127.0.0.1:8000")->origin == "http://127.0.0.1:8000");
  CHECK(ParseCompletionsUrl("http://127.0.0.1:8000")->path == "/v1/completions");
  CHECK(ParseCompletionsUrl("http://localhost:8000/v1/")->path == "/v1/completions");
  CHECK(ParseCompletionsUrl("http://h/api/v1/completions")->path == "/api/v1/completions");
  CHECK(ParseCompletionsUrl("http://h/proxy")->path == "/proxy/v1/completions");
  CHECK(ParseCompletionsUrl("https://h:443")->origin == "https://h:443");
  CHECK_FALSE(ParseCompletionsUrl("127.0.0.1:8000").ok());
  CHECK_FALSE(ParseCompletionsUrl("ftp://h").ok());
}

// A fake OpenAI-compatible server on loopback, streaming three text deltas and a usage chunk.
class FakeOpenAiServer {
 public:
  FakeOpenAiServer() {
    server_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      last_body_ = nlohmann::json::parse(req.body);
      last_auth_ = req.get_header_value("Authorization");
      Stream(res, true);
    });
    server_.Post("/nodone/v1/completions", [](const httplib::Request&, httplib::Response& res) { Stream(res, false); });
    server_.Post("/limited/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.status = 429;
      res.set_content(R"({"error": {"message": "queue full", "type": "rate_limit", "code": "429"}})", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeOpenAiServer() {
    server_.stop();
    thread_.join();
  }
  std::string url(const std::string& prefix = "") const { return "http://127.0.0.1:" + std::to_string(port_) + prefix; }
  const nlohmann::json& last_body() const { return last_body_; }
  const std::string& last_auth() const { return last_auth_; }

 private:
  static void Stream(httplib::Response& res, bool done) {
    res.set_chunked_content_provider("text/event-stream", [done](size_t, httplib::DataSink& sink) {
      for (const char* text : {"def", " f", "():"}) {
        const std::string event = "data: {\"choices\": [{\"index\": 0, \"text\": \"" + std::string(text) + "\"}]}\n\n";
        // Split every event in two writes, as a network might.
        sink.write(event.data(), 9);
        sink.write(event.data() + 9, event.size() - 9);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      const std::string usage = "data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 7, \"completion_tokens\": 3}}\n\n";
      sink.write(usage.data(), usage.size());
      if (done) sink.write("data: [DONE]\n\n", 14);
      sink.done();
      return true;
    });
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  nlohmann::json last_body_;
  std::string last_auth_;
};

Clock::time_point In(double seconds) { return Clock::now() + std::chrono::milliseconds(int64_t(seconds * 1000)); }

TEST_CASE("the OpenAI client times a streamed completion and reads its usage") {
  FakeOpenAiServer server;
  RequestOptions options;
  options.model = "xlstm-code-mtp";
  OpenAiLoadClient client(*ParseCompletionsUrl(server.url()), "secret", options);
  WorkloadRequest request;
  request.prompt = "import os";
  request.max_tokens = 3;
  const RequestResult r = client.Send(request, In(10));
  INFO(r.error_key << ": " << r.error_message);
  REQUIRE(r.ok);
  CHECK(r.chunk_times.size() == 3);
  CHECK(r.output_tokens == 3);
  CHECK(r.prompt_tokens == 7);
  CHECK(r.ttft_s > 0);
  CHECK(r.ttft_s == r.chunk_times[0]);
  // The server waits 20 ms after each delta.
  CHECK(r.chunk_times[2] - r.chunk_times[0] >= 0.035);
  CHECK(r.e2e_s >= r.chunk_times[2]);
  CHECK(server.last_body()["stream"] == true);
  CHECK(server.last_body()["stream_options"]["include_usage"] == true);
  CHECK(server.last_body()["max_tokens"] == 3);
  CHECK(server.last_body()["prompt"] == "import os");
  CHECK(server.last_body()["model"] == "xlstm-code-mtp");
  CHECK(server.last_auth() == "Bearer secret");

  request.prompt.clear();
  request.prompt_token_ids = {5, 6};
  REQUIRE(client.Send(request, In(10)).ok);
  CHECK(server.last_body()["prompt"] == nlohmann::json::array({5, 6}));
}

TEST_CASE("the OpenAI client reports HTTP errors, cut streams and unreachable servers by key") {
  FakeOpenAiServer server;
  WorkloadRequest request;
  request.prompt = "x";

  const RequestResult limited = OpenAiLoadClient(*ParseCompletionsUrl(server.url("/limited")), "", {}).Send(request, In(10));
  CHECK_FALSE(limited.ok);
  CHECK(limited.error_key == "http 429");
  CHECK(limited.error_message == "queue full");

  const RequestResult cut = OpenAiLoadClient(*ParseCompletionsUrl(server.url("/nodone")), "", {}).Send(request, In(10));
  CHECK_FALSE(cut.ok);
  CHECK(cut.error_key == "http incomplete stream");

  const RequestResult timed_out = OpenAiLoadClient(*ParseCompletionsUrl(server.url()), "", {}).Send(request, In(0.01));
  CHECK_FALSE(timed_out.ok);
  CHECK(timed_out.e2e_s < 1.0);

  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  const RequestResult refused = OpenAiLoadClient(*ParseCompletionsUrl("http://127.0.0.1:1"), "", {}).Send(request, In(10));
  CHECK_FALSE(refused.ok);
  CHECK(refused.error_key == "http connection");
}

TEST_CASE("the gRPC client reports an unreachable server as UNAVAILABLE") {
  GrpcLoadClient client("127.0.0.1:1", RequestOptions{});
  WorkloadRequest request;
  request.prompt = "x";
  const RequestResult r = client.Send(request, In(10));
  CHECK_FALSE(r.ok);
  CHECK(r.error_key == "grpc UNAVAILABLE");
  CHECK(r.e2e_s < 5.0);
  CHECK(GrpcCodeName(4) == "DEADLINE_EXCEEDED");
  CHECK(GrpcCodeName(99) == "CODE_99");
}

}  // namespace
}  // namespace xlserve::loadtest
