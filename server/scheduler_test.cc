// The scheduler against FakeBackend (engine/testing/fake_backend.h): deterministic, no threads,
// no sleeps — each test drives RunIteration() and the output stage's Drain() itself.
#include "server/scheduler.h"

#include <catch2/catch.hpp>

#include <map>

#include "engine/testing/fake_backend.h"

namespace xlserve::server {
namespace {

using testing::FakeBackend;
using testing::FakeBackendOptions;

struct Completion {
  std::vector<int32_t> tokens;
  std::optional<FinishReason> finish_reason;
  absl::Status error;
  Usage usage;
  int finished_at = -1;  // iteration
};

class Harness {
 public:
  explicit Harness(SchedulerOptions options, FakeBackendOptions fake = {}) : backend(fake) {
    options.threads = false;
    if (options.state_cache_host_bytes < 0) options.state_cache_host_bytes = int64_t{64} << 20;
    config.vocab_size = fake.vocab_size;
    scheduler = std::make_unique<Scheduler>(&backend, nullptr, config, options, &metrics);
    REQUIRE(scheduler->Start().ok());
  }

  std::shared_ptr<Request> Make(std::vector<int32_t> prompt, int max_tokens) {
    auto r = std::make_shared<Request>();
    r->id = "r" + std::to_string(next_id_++);
    r->generation.prompt_ids = std::move(prompt);
    r->generation.max_new_tokens = max_tokens;
    r->arrival = std::chrono::steady_clock::now();
    return r;
  }
  std::shared_ptr<Request> Submit(std::vector<int32_t> prompt, int max_tokens, int priority = 0) {
    auto r = Make(std::move(prompt), max_tokens);
    r->priority = priority;
    REQUIRE(scheduler->Submit(r).ok());
    return r;
  }

  // One iteration and its output; returns whether the scheduler had any forward pass.
  bool Iterate() {
    const size_t before = backend.forwards.size();
    scheduler->RunIteration();
    scheduler->output().Drain();
    ++iterations;
    for (auto& [req, c] : results_) Collect(req, c);
    return backend.forwards.size() > before;
  }
  void Track(const std::shared_ptr<Request>& r) { results_.emplace(r, Completion{}); }
  const Completion& Result(const std::shared_ptr<Request>& r) { return results_.at(r); }
  // Iterates until every tracked request has its final event.
  void RunUntilDone(int limit = 2000) {
    for (int i = 0; i < limit; ++i) {
      bool all = true;
      for (auto& [req, c] : results_) all = all && c.finish_reason.has_value();
      if (all) return;
      Iterate();
    }
    FAIL("requests did not finish within " << limit << " iterations");
  }

  FakeBackend backend;
  ModelConfig config;
  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  int iterations = 0;

 private:
  void Collect(const std::shared_ptr<Request>& r, Completion& c) {
    for (Event& e : r->events.Pop(std::chrono::milliseconds(0))) {
      for (const TokenEvent& t : e.tokens) c.tokens.push_back(t.token_id);
      if (e.finish_reason) {
        REQUIRE_FALSE(c.finish_reason);  // exactly one final event
        c.finish_reason = e.finish_reason;
        c.error = e.error;
        c.usage = e.usage;
        c.finished_at = iterations;
      }
    }
  }
  std::map<std::shared_ptr<Request>, Completion> results_;
  int next_id_ = 0;
};

std::vector<int32_t> Prompt(int length, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < length; ++i) p.push_back((i * 7 + salt * 13) % 61);
  return p;
}

TEST_CASE("greedy completions are the model's own, whatever the batching and chunking") {
  SchedulerOptions o;
  o.max_num_seqs = 3;
  o.step_token_budget = 24;
  o.prefill_chunk_while_decoding = 5;
  o.num_draft = 0;
  Harness h(o);
  std::vector<std::shared_ptr<Request>> reqs;
  for (int i = 0; i < 6; ++i) {
    reqs.push_back(h.Submit(Prompt(3 + 11 * i, i), 5 + 3 * i));
    h.Track(reqs.back());
  }
  h.RunUntilDone();
  for (int i = 0; i < 6; ++i) {
    const Completion& c = h.Result(reqs[i]);
    INFO("request " << i);
    CHECK(c.finish_reason == FinishReason::kLength);
    CHECK(c.tokens == h.backend.Greedy(reqs[i]->generation.prompt_ids, 5 + 3 * i));
    CHECK(c.usage.completion_tokens == 5 + 3 * i);
    CHECK(c.usage.prompt_tokens == 3 + 11 * i);
  }
  CHECK(h.scheduler->slots_in_use() == 0);
  // Iterations with a pass are timed whole, the pass included.
  CHECK(h.metrics.engine_steps_total > 0);
  CHECK(h.metrics.engine_step_seconds_total > 0);
  CHECK(h.metrics.engine_loop_seconds_total >= h.metrics.engine_step_seconds_total);
}

TEST_CASE("each iteration is one forward pass: decode rows first, then a bounded prompt chunk") {
  SchedulerOptions o;
  o.max_num_seqs = 4;
  o.step_token_budget = 40;
  o.prefill_chunk_while_decoding = 6;
  o.num_draft = 0;
  Harness h(o);
  auto streaming = h.Submit(Prompt(4, 1), 40);
  h.Track(streaming);
  h.Iterate();
  h.Iterate();
  auto long_prompt = h.Submit(Prompt(50, 2), 3);
  h.Track(long_prompt);
  int mixed = 0;
  while (!h.Result(long_prompt).finish_reason) {
    const size_t before = h.backend.forwards.size();
    h.Iterate();
    REQUIRE(h.backend.forwards.size() == before + 1);
    const auto& rows = h.backend.forwards.back();
    if (!h.Result(streaming).finish_reason) {
      // The running stream decodes in every pass, first; the prompt's chunk stays small.
      REQUIRE(!rows.empty());
      CHECK(rows[0].tokens == 1);
      for (size_t i = 1; i < rows.size(); ++i) CHECK(rows[i].tokens <= 6);
      mixed += rows.size() > 1 ? 1 : 0;
    }
    int total = 0;
    for (const auto& r : rows) total += r.tokens;
    CHECK(total <= 40);
  }
  CHECK(mixed >= 50 / 6);
  h.RunUntilDone();
  CHECK(h.Result(streaming).tokens == h.backend.Greedy(streaming->generation.prompt_ids, 40));
  CHECK(h.Result(long_prompt).tokens == h.backend.Greedy(long_prompt->generation.prompt_ids, 3));
  // With nothing decoding, a prompt takes the whole budget.
  auto alone = h.Submit(Prompt(100, 3), 1);
  h.Track(alone);
  h.Iterate();
  CHECK(h.backend.forwards.back().size() == 1);
  CHECK(h.backend.forwards.back()[0].tokens == 40);
  h.RunUntilDone();
}

TEST_CASE("higher priority is admitted first, arrival order among equals") {
  SchedulerOptions o;
  o.max_num_seqs = 1;
  o.num_draft = 0;
  o.step_token_budget = 64;
  Harness h(o);
  auto low1 = h.Submit(Prompt(5, 1), 3, 0);
  auto low2 = h.Submit(Prompt(5, 2), 3, 0);
  auto high = h.Submit(Prompt(5, 3), 3, 7);
  for (auto& r : {low1, low2, high}) h.Track(r);
  h.RunUntilDone();
  CHECK(h.Result(high).finished_at < h.Result(low1).finished_at);
  CHECK(h.Result(low1).finished_at < h.Result(low2).finished_at);
}

TEST_CASE("a higher-priority request preempts a running one, which resumes from its kept state") {
  SchedulerOptions o;
  o.max_num_seqs = 1;
  o.num_draft = 0;
  o.step_token_budget = 64;
  Harness h(o);
  auto low = h.Submit(Prompt(9, 1), 30, 0);
  h.Track(low);
  for (int i = 0; i < 5; ++i) h.Iterate();
  auto high = h.Submit(Prompt(6, 2), 4, 3);
  h.Track(high);
  h.RunUntilDone();
  CHECK(h.Result(high).finished_at < h.Result(low).finished_at);
  CHECK(h.metrics.preemptions_total == 1);
  CHECK(h.Result(low).tokens == h.backend.Greedy(low->generation.prompt_ids, 30));
  CHECK(h.Result(high).tokens == h.backend.Greedy(high->generation.prompt_ids, 4));
  CHECK(h.scheduler->store().stats().swapped_entries == 0);
}

TEST_CASE("cancellation and deadlines end a request at the next iteration and free its slot") {
  SchedulerOptions o;
  o.max_num_seqs = 2;
  o.num_draft = 0;
  o.step_token_budget = 64;
  Harness h(o);
  auto cancelled = h.Submit(Prompt(5, 1), 1000);
  auto expired = h.Submit(Prompt(5, 2), 1000);
  auto queued = h.Submit(Prompt(5, 3), 1000);
  for (auto& r : {cancelled, expired, queued}) h.Track(r);
  h.Iterate();
  h.Iterate();
  CHECK(h.scheduler->slots_in_use() == 2);
  cancelled->cancelled = true;
  expired->deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  queued->cancelled = true;
  h.Iterate();
  for (auto& r : {cancelled, expired, queued}) CHECK(h.Result(r).finish_reason == FinishReason::kCancelled);
  CHECK(h.scheduler->slots_in_use() == 0);
  CHECK(h.metrics.requests_cancelled_total == 3);
  // Cancelled work keeps no state.
  CHECK(h.scheduler->store().stats().session_entries == 0);
}

TEST_CASE("the waiting queue is bounded") {
  SchedulerOptions o;
  o.max_num_seqs = 1;
  o.max_queue = 2;
  o.num_draft = 0;
  Harness h(o);
  h.Submit(Prompt(3, 1), 1);
  h.Submit(Prompt(3, 2), 1);
  auto third = h.Make(Prompt(3, 3), 1);
  CHECK(h.scheduler->Submit(third).code() == absl::StatusCode::kResourceExhausted);
  auto many = h.Make(Prompt(3, 3), 1);
  many->n = 2;
  CHECK(h.scheduler->Submit(many).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("speculative verify rows and prompt chunks share one pass, and the output is lossless") {
  SchedulerOptions o;
  o.max_num_seqs = 3;
  o.num_draft = 3;
  o.step_token_budget = 32;
  o.prefill_chunk_while_decoding = 8;
  FakeBackendOptions fake;
  fake.mtp_heads = 3;
  fake.wrong_draft_every = 3;
  Harness h(o, fake);
  auto spec = h.Make(Prompt(7, 1), 60);
  spec->generation.speculation = SpeculationMode::kOn;
  spec->generation.num_draft = 3;
  REQUIRE(h.scheduler->Submit(spec).ok());
  h.Track(spec);
  h.Iterate();
  h.Iterate();
  auto plain = h.Submit(Prompt(30, 2), 5);
  h.Track(plain);
  bool shared = false;
  while (!h.Result(plain).finish_reason && h.iterations < 500) {
    h.Iterate();
    const auto& rows = h.backend.forwards.back();
    if (rows.size() == 2 && rows[0].defer && rows[0].tokens > 1 && !rows[1].defer) shared = true;
  }
  CHECK(shared);
  h.RunUntilDone();
  const Completion& c = h.Result(spec);
  CHECK(c.tokens == h.backend.Greedy(spec->generation.prompt_ids, 60));
  CHECK(c.usage.accepted_drafts > 0);
  CHECK(c.usage.accepted_drafts < c.usage.drafted_tokens);  // some drafts were wrong
  CHECK(c.usage.decode_steps < 59);
  CHECK(h.Result(plain).tokens == h.backend.Greedy(plain->generation.prompt_ids, 5));
}

TEST_CASE("decode steps that mix a verify with plain rows are counted, and uniform ones are not") {
  SchedulerOptions o;
  o.max_num_seqs = 2;
  o.num_draft = 3;
  FakeBackendOptions fake;
  fake.mtp_heads = 3;
  Harness h(o, fake);
  // Two plain greedy requests: every decode step is two one-token rows alike.
  auto a = h.Submit(Prompt(5, 1), 20), b = h.Submit(Prompt(6, 2), 20);
  h.Track(a);
  h.Track(b);
  h.RunUntilDone();
  CHECK(h.metrics.mixed_decode_steps_total == 0);

  // A speculative request beside a plain one: while both decode, each step holds a verify of
  // several tokens and a plain row.
  auto spec = h.Make(Prompt(7, 3), 40);
  spec->generation.speculation = SpeculationMode::kOn;
  spec->generation.num_draft = 3;
  REQUIRE(h.scheduler->Submit(spec).ok());
  h.Track(spec);
  auto plain = h.Submit(Prompt(6, 4), 40);
  h.Track(plain);
  const size_t before = h.backend.forwards.size();
  h.RunUntilDone();
  int64_t mixed = 0;
  for (size_t i = before; i < h.backend.forwards.size(); ++i) {
    const auto& rows = h.backend.forwards[i];
    mixed += rows.size() == 2 && rows[0].defer != rows[1].defer && rows[0].tokens + rows[1].tokens > 2 &&
             std::min(rows[0].tokens, rows[1].tokens) == 1;
  }
  CHECK(mixed > 0);
  CHECK(h.metrics.mixed_decode_steps_total == mixed);
}

TEST_CASE("a session's next turn prefills only its new tokens and continues exactly") {
  SchedulerOptions o;
  o.max_num_seqs = 2;
  o.num_draft = 0;
  o.step_token_budget = 64;
  Harness h(o);
  const std::vector<int32_t> p1 = Prompt(12, 1), p2 = Prompt(5, 2), p3 = Prompt(4, 3);
  auto turn1 = h.Make(p1, 8);
  turn1->session_id = "chat";
  REQUIRE(h.scheduler->Submit(turn1).ok());
  h.Track(turn1);
  h.RunUntilDone();
  CHECK_FALSE(h.Result(turn1).usage.session_resumed);
  const std::vector<int32_t> t1 = h.Result(turn1).tokens;

  auto turn2 = h.Make(p2, 6);
  turn2->session_id = "chat";
  REQUIRE(h.scheduler->Submit(turn2).ok());
  h.Track(turn2);
  h.RunUntilDone();
  const Completion& c2 = h.Result(turn2);
  CHECK(c2.usage.session_resumed);
  CHECK(c2.usage.cached_prompt_tokens == 12 + 8 - 1);
  CHECK(c2.usage.prefill_tokens == 1 + 5);  // last turn's final token, then the new prompt
  std::vector<int32_t> history = p1;
  history.insert(history.end(), t1.begin(), t1.end());
  history.insert(history.end(), p2.begin(), p2.end());
  CHECK(c2.tokens == h.backend.Greedy(history, 6));

  auto unknown = h.Make(p3, 2);
  unknown->session_id = "never-seen";
  auto demanded = h.Make(p3, 2);
  demanded->session_id = "never-seen-either";
  demanded->require_session = true;
  for (auto& r : {unknown, demanded}) {
    REQUIRE(h.scheduler->Submit(r).ok());
    h.Track(r);
  }
  h.RunUntilDone();
  CHECK_FALSE(h.Result(unknown).usage.session_resumed);
  CHECK(h.Result(unknown).tokens == h.backend.Greedy(p3, 2));
  CHECK(h.Result(demanded).finish_reason == FinishReason::kError);
  CHECK(h.Result(demanded).error.code() == absl::StatusCode::kNotFound);
  CHECK(h.metrics.sessions_resumed_total == 1);
  CHECK(h.metrics.sessions_missed_total == 2);
}

TEST_CASE("prompts reuse cached prefixes: a longer prompt, and a conversation resent whole") {
  SchedulerOptions o;
  o.max_num_seqs = 2;
  o.num_draft = 0;
  o.step_token_budget = 64;
  Harness h(o);
  const std::vector<int32_t> p = Prompt(30, 1);
  auto first = h.Submit(p, 6);
  h.Track(first);
  h.RunUntilDone();
  const std::vector<int32_t> t = h.Result(first).tokens;

  std::vector<int32_t> longer = p;
  longer.insert(longer.end(), {5, 6, 7});
  auto second = h.Submit(longer, 4);
  h.Track(second);
  // The whole conversation resent with a new message: the state after the first completion
  // (all but its last token) serves it.
  std::vector<int32_t> resent = p;
  resent.insert(resent.end(), t.begin(), t.end());
  resent.insert(resent.end(), {9, 8});
  auto third = h.Submit(resent, 4);
  h.Track(third);
  h.RunUntilDone();
  CHECK(h.Result(second).usage.cached_prompt_tokens == 30);
  CHECK(h.Result(second).usage.prefill_tokens == 3);
  CHECK(h.Result(second).tokens == h.backend.Greedy(longer, 4));
  CHECK(h.Result(third).usage.cached_prompt_tokens == 30 + 6 - 1);
  CHECK(h.Result(third).usage.prefill_tokens == 3);
  CHECK(h.Result(third).tokens == h.backend.Greedy(resent, 4));
}

// The start-up passes of a scheduler with 5 slots, 2 drafts and a 40-row budget on a backend
// with 2 heads: each bucket (1, 2, 4, 5 sequences) ran a plain step and verifies of 2 and 3 tokens
// at least 3 times each, and the slots are left empty; returns the rows of the largest pass.
int CheckBucketSteps(bool wants_warm_up) {
  SchedulerOptions o;
  o.max_num_seqs = 5;
  o.num_draft = 2;
  o.step_token_budget = 40;
  FakeBackendOptions fake;
  fake.wants_warm_up = wants_warm_up;
  fake.mtp_heads = 2;
  Harness h(o, fake);
  if (wants_warm_up) CHECK_FALSE(h.backend.tuning);  // nothing is tuned inside a live step
  std::map<std::pair<int, int>, int> shapes;  // (sequences, tokens each) of uniform passes
  int largest = 0;
  for (const auto& rows : h.backend.forwards) {
    int total = 0;
    for (const auto& r : rows) total += r.tokens;
    largest = std::max(largest, total);
    ++shapes[{static_cast<int>(rows.size()), rows[0].tokens}];
  }
  for (int batch : {1, 2, 4, 5}) {
    CHECK(shapes[{batch, 1}] >= 3);
    for (int len = 2; len <= 3; ++len) CHECK(shapes[{batch, len}] >= 3);
  }
  for (int slot = 0; slot < 5; ++slot) CHECK(h.backend.seen(slot).empty());
  return largest;
}

TEST_CASE("start-up warms every step shape up, then leaves the slots empty") { CHECK(CheckBucketSteps(true) == 40); }

TEST_CASE("a backend that wants no warm-up still has its step costs measured when it can draft") {
  CHECK(CheckBucketSteps(false) == 5 * 3);  // the bucket steps only: no prompt-chunk ladder, no largest pass
  SchedulerOptions o;
  o.max_num_seqs = 5;
  o.num_draft = 0;  // nothing to decide: no pass at all
  FakeBackendOptions fake;
  fake.mtp_heads = 2;
  Harness plain(o, fake);
  CHECK(plain.backend.forwards.empty());
}

TEST_CASE("a greedy auto request joining a batch that left speculation is prefilled and decoded plainly") {
  SchedulerOptions o;
  o.max_num_seqs = 4;
  o.num_draft = 3;
  FakeBackendOptions fake;
  fake.mtp_heads = 3;
  // Warm-up measures plain steps at ~1 ms and verify steps 0.3 ms a token dearer: kept drafts
  // would pay, but every first draft is wrong, so the batch leaves once 32 were judged.
  fake.pass_seconds = 0.001;
  fake.verify_token_seconds = 0.0003;
  fake.wrong_draft = [](int, int head) { return head == 1; };
  Harness h(o, fake);
  h.backend.forwards.clear();
  auto auto_request = [&](std::vector<int32_t> prompt, int tokens) {
    auto r = h.Make(std::move(prompt), tokens);
    r->generation.speculation = SpeculationMode::kAuto;
    r->generation.num_draft = 3;
    REQUIRE(h.scheduler->Submit(r).ok());
    h.Track(r);
    return r;
  };
  const auto first = auto_request({1, 2, 3}, 30), second = auto_request({4, 5, 6}, 30);
  for (int i = 0; i < 20; ++i) h.Iterate();  // both prefilled with their heads, then left together
  const auto late = auto_request({7, 8, 9, 10}, 5);
  while (!h.Result(late).finish_reason) REQUIRE(h.Iterate());
  bool first_prefill_had_heads = false;
  int late_rows = 0;
  for (const auto& rows : h.backend.forwards) {
    for (const auto& row : rows) {
      if (row.tokens == 3 && !row.defer) first_prefill_had_heads = first_prefill_had_heads || row.heads;
      if (row.tokens == 4 && !row.defer) {  // the late prompt's prefill: without heads
        ++late_rows;
        CHECK_FALSE(row.heads);
      }
    }
  }
  CHECK(first_prefill_had_heads);
  CHECK(late_rows == 1);
  const std::vector<int32_t> late_prompt = {7, 8, 9, 10};
  CHECK(h.Result(late).tokens == h.backend.Greedy(late_prompt, 5));
  while (!h.Result(first).finish_reason || !h.Result(second).finish_reason) REQUIRE(h.Iterate());
  const std::vector<int32_t> first_prompt = {1, 2, 3}, second_prompt = {4, 5, 6};
  CHECK(h.Result(first).tokens == h.backend.Greedy(first_prompt, 30));
  CHECK(h.Result(second).tokens == h.backend.Greedy(second_prompt, 30));
}

TEST_CASE("a failed forward pass ends the running requests with an error, and serving goes on") {
  SchedulerOptions o;
  o.max_num_seqs = 2;
  o.num_draft = 0;
  Harness h(o);
  auto a = h.Submit(Prompt(5, 1), 10);
  h.Track(a);
  h.Iterate();
  h.backend.fail_next_forward = absl::InternalError("device lost");
  h.Iterate();
  CHECK(h.Result(a).finish_reason == FinishReason::kError);
  CHECK(h.Result(a).error.code() == absl::StatusCode::kInternal);
  CHECK(h.scheduler->slots_in_use() == 0);
  auto b = h.Submit(Prompt(5, 2), 3);
  h.Track(b);
  h.RunUntilDone();
  CHECK(h.Result(b).tokens == h.backend.Greedy(b->generation.prompt_ids, 3));
}

TEST_CASE("many prompts at once all progress: none waits forever behind the others") {
  SchedulerOptions o;
  o.max_num_seqs = 4;
  o.num_draft = 0;
  o.step_token_budget = 16;
  o.prefill_chunk_while_decoding = 4;
  Harness h(o);
  std::vector<std::shared_ptr<Request>> reqs;
  for (int i = 0; i < 12; ++i) {
    reqs.push_back(h.Submit(Prompt(20 + i, i), 10));
    h.Track(reqs.back());
  }
  h.RunUntilDone(400);
  for (auto& r : reqs) CHECK(h.Result(r).tokens == h.backend.Greedy(r->generation.prompt_ids, 10));
}

TEST_CASE("the live graph-build count starts after warm-up and follows each step") {
  int64_t builds = 7;  // as if warm-up had built these
  SchedulerOptions o;
  o.max_num_seqs = 2;
  o.graph_builds = [&builds] { return builds; };
  Harness h(o);
  CHECK(h.metrics.live_graph_builds_total == 0);
  auto r = h.Submit(Prompt(5, 1), 3);
  h.Track(r);
  builds += 2;  // the next step built two graphs
  h.Iterate();
  CHECK(h.metrics.live_graph_builds_total == 2);
  h.RunUntilDone();
  CHECK(h.metrics.live_graph_builds_total == 2);
  CHECK(h.metrics.Render().find("\nxlserve_live_graph_builds_total 2\n") != std::string::npos);
}

}  // namespace
}  // namespace xlserve::server
