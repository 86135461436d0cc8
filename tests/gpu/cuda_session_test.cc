// Sessions through the scheduler on the CUDA backend: a conversation continued from its kept
// state gives what resending the whole history to a server without a state cache gives —
// identical greedy tokens on the shipped model with an fp32 state, and at the 7B shape first-token
// log-probabilities as close to an fp32 state's as re-prefilling with a bf16 state gets ([.7b], hidden: run with the
// directory of a random xLSTM-7b checkpoint in XLSERVE_7B_MODEL, as bench/serve_7b.py
// does). Tagged "gpu".
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>

#include "engine/model/model_weights.h"
#include "server/scheduler.h"
#include "tests/gpu/gpu_test_support.h"

namespace xlserve {
namespace {

using server::Request;
using server::Scheduler;
using server::SchedulerOptions;

struct Turn {
  std::vector<int32_t> tokens;
  std::vector<server::TokenEvent> events;
  server::Usage usage;
};

class Served {
 public:
  Served(std::shared_ptr<const ModelWeights> weights, DType state, bool cache) {
    backend_ = testing::MakeCudaBackend(weights, 4, state);
    config_ = weights->config;
    SchedulerOptions o;
    o.max_num_seqs = 2;
    o.threads = false;
    o.warm_up = false;
    o.state_cache_device_bytes = cache ? int64_t{8} * backend_->snapshot_bytes() : 0;
    o.state_cache_host_bytes = cache ? int64_t{2} * backend_->snapshot_bytes() : 0;
    scheduler_ = std::make_unique<Scheduler>(backend_.get(), nullptr, config_, o, &metrics_);
    REQUIRE(scheduler_->Start().ok());
  }

  Turn Run(const std::vector<int32_t>& prompt, int max_tokens, const std::string& session) {
    auto r = std::make_shared<Request>();
    r->id = "t";
    r->generation.prompt_ids = prompt;
    r->generation.max_new_tokens = max_tokens;
    r->generation.speculation = SpeculationMode::kOff;
    r->session_id = session;
    r->logprobs = 20;
    r->arrival = std::chrono::steady_clock::now();
    REQUIRE(scheduler_->Submit(r).ok());
    Turn turn;
    for (int i = 0; i < 10000; ++i) {
      scheduler_->RunIteration();
      scheduler_->output().Drain();
      for (server::Event& e : r->events.Pop(std::chrono::milliseconds(0))) {
        for (const server::TokenEvent& t : e.tokens) {
          turn.tokens.push_back(t.token_id);
          turn.events.push_back(t);
        }
        if (e.finish_reason) {
          REQUIRE(e.finish_reason == server::FinishReason::kLength);
          turn.usage = e.usage;
          return turn;
        }
      }
    }
    FAIL("the request did not finish");
    return turn;
  }

 private:
  std::unique_ptr<Backend> backend_;
  ModelConfig config_;
  server::Metrics metrics_;
  std::unique_ptr<Scheduler> scheduler_;
};

std::vector<int32_t> Ids(int n, int salt, int vocab) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(1 + (i * 7919 + salt * 104729) % (vocab - 1));
  return v;
}

// Largest difference between the first token's top log-probabilities of two turns (over the
// tokens both list).
double FirstTokenLogprobDiff(const Turn& a, const Turn& b) {
  double worst = 0;
  for (const server::TopLogprob& x : a.events.front().top) {
    for (const server::TopLogprob& y : b.events.front().top) {
      if (x.token_id == y.token_id) worst = std::max(worst, double(std::fabs(x.logprob - y.logprob)));
    }
  }
  return worst;
}

// Runs `turns` turns as a session on `cached` and as whole histories on `cold`; checks the
// tokens are identical and the resumed turns' accounting; returns the largest first-token
// log-probability difference.
double CompareSession(Served& cached, Served& cold, int turns, int prompt_tokens, int max_tokens, int vocab) {
  std::vector<int32_t> history;
  double worst = 0;
  for (int t = 0; t < turns; ++t) {
    const std::vector<int32_t> prompt = Ids(prompt_tokens, t, vocab);
    const Turn resumed = cached.Run(prompt, max_tokens, "conversation");
    history.insert(history.end(), prompt.begin(), prompt.end());
    const Turn whole = cold.Run(history, max_tokens, "");
    CHECK(resumed.usage.session_resumed == (t > 0));
    if (t > 0) CHECK(resumed.usage.prefill_tokens == prompt_tokens + 1);
    CHECK(resumed.tokens == whole.tokens);
    worst = std::max(worst, FirstTokenLogprobDiff(resumed, whole));
    history.insert(history.end(), resumed.tokens.begin(), resumed.tokens.end());
  }
  return worst;
}

TEST_CASE("shipped model on the GPU: a session continues exactly like resending the history") {
  auto weights = LoadModelWeights("models/xlstm-code-mtp");
  REQUIRE(weights.ok());
  Served cached(*weights, DType::kF32, true), cold(*weights, DType::kF32, false);
  const double worst = CompareSession(cached, cold, 5, 40, 16, (*weights)->config.vocab_size);
  // Same maths in fp32; the prefill's chunks split at other places (turn boundaries).
  CHECK(worst < 1e-3);
  std::printf("shipped model, fp32 state: first-token logprob max |diff| %.2e\n", worst);
}

TEST_CASE("7B: a resumed turn matches re-prefilling the history", "[.7b]") {
  const char* dir = std::getenv("XLSERVE_7B_MODEL");
  REQUIRE(dir != nullptr);
  auto weights = LoadModelWeights(dir);
  REQUIRE(weights.ok());
  const int vocab = (*weights)->config.vocab_size;
  // Random weights make greedy near-ties common: first-token log-probabilities are compared.
  double gap[2] = {0, 0};
  for (DType state : {DType::kF32, DType::kBF16}) {
    Served cached(*weights, state, true), cold(*weights, state, false);
    std::vector<int32_t> history;
    double& worst = gap[state == DType::kF32 ? 0 : 1];
    for (int t = 0; t < 10; ++t) {
      const std::vector<int32_t> prompt = Ids(64, t, vocab);
      const Turn resumed = cached.Run(prompt, 8, "conversation");
      history.insert(history.end(), prompt.begin(), prompt.end());
      const Turn whole = cold.Run(history, 8, "");
      CHECK(resumed.usage.session_resumed == (t > 0));
      worst = std::max(worst, FirstTokenLogprobDiff(resumed, whole));
      history.insert(history.end(), resumed.tokens.begin(), resumed.tokens.end());
    }
  }
  // fp32: the kept state is the one the sequence had, so only the order of fp32 sums differs.
  // bf16 (reported): the session's earlier tokens went through decode steps, which round the
  // state to bf16 after every token, where re-prefilling rounds once per chunk; that drift is
  // plain bf16 decoding's own (cuda_backend_test: up to 0.26 on small models), not the store's.
  std::printf("7B, 10 turns, first-token logprob max |diff| resumed vs re-prefilled: fp32 state %.2e, bf16 state "
              "%.2e\n", gap[0], gap[1]);
  CHECK(gap[0] < 1e-3);
}

}  // namespace
}  // namespace xlserve
