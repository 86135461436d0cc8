// A C++ gRPC client driving the real `xlserve serve` binary over loopback, on a golden
// checkpoint (no tokenizer): token-id prompts must give transformers' greedy tokens.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

#include "proto/xlserve/v1/xlserve.grpc.pb.h"
#include "tests/engine/golden_case.h"

extern char** environ;

namespace xlserve {
namespace {

// The server binary as a child process; its first stdout line names the port it bound.
class ServerProcess {
 public:
  ServerProcess(const std::string& binary, const std::string& model) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> args = {binary, "serve", "--model", model, "--port", "0", "--metrics-port", "-1",
                                     "--threads", "2", "--max-num-seqs", "2"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int spawned = posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(spawned == 0);
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
    char line[256] = {0};
    REQUIRE(fgets(line, sizeof(line), out_) != nullptr);
    int port = 0, metrics = 0;
    char host[64];
    REQUIRE(std::sscanf(line, "xlserve listening on %63[^:]:%d metrics %d", host, &port, &metrics) == 3);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
    stub_ = v1::XlServe::NewStub(channel_);
  }
  ~ServerProcess() {
    if (pid_ > 0) Stop();
  }
  int Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    fclose(out_);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  v1::XlServe::Stub& stub() { return *stub_; }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::XlServe::Stub> stub_;
};

std::string Binary() {
  const char* path = std::getenv("XLSERVE_BINARY");
  return path ? path : "xlserve";
}

TEST_CASE("a C++ client streams transformers' greedy tokens from the server") {
  const std::vector<testing::GoldenCase> cases = testing::LoadGoldenCases();
  const testing::GoldenCase* base = nullptr;
  for (const auto& c : cases) {
    if (c.name == "f32_base") base = &c;
  }
  REQUIRE(base != nullptr);
  ServerProcess server(Binary(), base->dir);

  for (const testing::GoldenPrompt& p : base->prompts) {
    v1::GenerateRequest request;
    for (int id : p.prompt_ids) request.add_prompt_token_ids(id);
    request.set_max_tokens(static_cast<int>(p.greedy_tokens.size()));
    request.set_ignore_eos(true);
    grpc::ClientContext context;
    auto reader = server.stub().Generate(&context, request);
    v1::GenerateResponse msg;
    std::vector<int> tokens;
    std::string finish;
    int usage_completion = -1;
    while (reader->Read(&msg)) {
      tokens.insert(tokens.end(), msg.token_ids().begin(), msg.token_ids().end());
      if (!msg.finish_reason().empty()) {
        finish = msg.finish_reason();
        usage_completion = msg.usage().completion_tokens();
      }
    }
    REQUIRE(reader->Finish().ok());
    CHECK(tokens == p.greedy_tokens);
    CHECK(finish == "length");
    CHECK(usage_completion == static_cast<int>(tokens.size()));
  }

  SECTION("errors come back as gRPC statuses") {
    v1::GenerateRequest bad;
    bad.add_prompt_token_ids(1);
    bad.add_prompt_token_ids(100000);
    grpc::ClientContext c1;
    v1::GenerateResponse msg;
    auto r1 = server.stub().Generate(&c1, bad);
    while (r1->Read(&msg)) {
    }
    CHECK(r1->Finish().error_code() == grpc::StatusCode::INVALID_ARGUMENT);

    grpc::ClientContext c2;
    v1::TokenizeRequest tok;
    tok.set_text("hi");
    v1::TokenizeResponse tok_out;
    CHECK(server.stub().Tokenize(&c2, tok, &tok_out).error_code() == grpc::StatusCode::FAILED_PRECONDITION);

    grpc::ClientContext c3;
    v1::GetModelInfoRequest info_req;
    v1::ModelInfo info;
    REQUIRE(server.stub().GetModelInfo(&c3, info_req, &info).ok());
    CHECK(info.vocab_size() == 256);
    CHECK(info.mtp_heads() == 0);
  }

  SECTION("a cancelled stream ends and the server keeps serving") {
    v1::GenerateRequest long_request;
    long_request.add_prompt_token_ids(5);
    long_request.set_max_tokens(3000);
    long_request.set_ignore_eos(true);
    grpc::ClientContext context;
    auto reader = server.stub().Generate(&context, long_request);
    v1::GenerateResponse msg;
    REQUIRE(reader->Read(&msg));
    context.TryCancel();
    while (reader->Read(&msg)) {
    }
    CHECK(reader->Finish().error_code() == grpc::StatusCode::CANCELLED);
    v1::GenerateRequest again;
    again.add_prompt_token_ids(5);
    again.set_max_tokens(3);
    grpc::ClientContext c2;
    auto r2 = server.stub().Generate(&c2, again);
    while (r2->Read(&msg)) {
    }
    CHECK(r2->Finish().ok());
  }
  CHECK(server.Stop() == 0);  // SIGTERM: graceful exit
}

}  // namespace
}  // namespace xlserve
