#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "loadtest/arrivals.h"
#include "loadtest/workload.h"

namespace xlserve::loadtest {
namespace {

int CountWords(const std::string& text) {
  std::istringstream in(text);
  std::string w;
  int n = 0;
  while (in >> w) ++n;
  return n;
}

std::string WriteTemp(const std::string& name, const std::string& content) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << content;
  return path;
}

TEST_CASE("Poisson arrivals have mean gap 1/rate and are ordered") {
  constexpr int kCount = 20000;
  const std::vector<double> t = PoissonArrivalTimes(4.0, kCount, 7);
  REQUIRE(t.size() == kCount);
  CHECK(std::is_sorted(t.begin(), t.end()));
  CHECK(t.front() > 0);
  // The mean of 20000 exponential gaps has a relative standard error of 1/sqrt(20000) = 0.7%;
  // 3% is over four of them.
  CHECK(t.back() / kCount == Approx(0.25).epsilon(0.03));
  // Exponential gaps: the standard deviation equals the mean (a fixed rate would give 0).
  double sum_sq = 0;
  for (int i = 1; i < kCount; ++i) sum_sq += (t[i] - t[i - 1] - 0.25) * (t[i] - t[i - 1] - 0.25);
  CHECK(std::sqrt(sum_sq / (kCount - 1)) == Approx(0.25).epsilon(0.05));
}

TEST_CASE("arrivals and workloads are reproducible for a seed and differ across seeds") {
  CHECK(PoissonArrivalTimes(2.0, 50, 1) == PoissonArrivalTimes(2.0, 50, 1));
  CHECK(PoissonArrivalTimes(2.0, 50, 1) != PoissonArrivalTimes(2.0, 50, 2));

  WorkloadOptions options;
  options.count = 20;
  options.prompt_tokens = *ParseLengthDist("prompt-tokens-dist", "uniform:4:40");
  options.max_tokens = *ParseLengthDist("max-tokens-dist", "normal:16:4");
  options.seed = 11;
  const auto a = GenerateWorkload(options), b = GenerateWorkload(options);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  options.seed = 12;
  const auto c = GenerateWorkload(options);
  REQUIRE(c.ok());
  bool same_as_c = true;
  for (int i = 0; i < 20; ++i) {
    CHECK((*a)[i].prompt == (*b)[i].prompt);
    CHECK((*a)[i].max_tokens == (*b)[i].max_tokens);
    same_as_c = same_as_c && (*a)[i].prompt == (*c)[i].prompt;
  }
  CHECK_FALSE(same_as_c);
}

TEST_CASE("synthetic prompts have the drawn lengths") {
  WorkloadOptions options;
  options.count = 200;
  options.prompt_tokens = *ParseLengthDist("prompt-tokens-dist", "uniform:5:9");
  options.max_tokens = LengthDist::Fixed(12);
  const auto text = GenerateWorkload(options);
  REQUIRE(text.ok());
  std::set<int> lengths;
  for (const WorkloadRequest& r : *text) {
    CHECK(r.prompt_token_ids.empty());
    CHECK(r.max_tokens == 12);
    lengths.insert(CountWords(r.prompt));
  }
  CHECK(lengths == std::set<int>{5, 6, 7, 8, 9});

  options.kind = PromptKind::kTokenIds;
  options.vocab_size = 50;
  const auto ids = GenerateWorkload(options);
  REQUIRE(ids.ok());
  for (int i = 0; i < options.count; ++i) {
    const WorkloadRequest& r = (*ids)[i];
    CHECK(r.prompt.empty());
    // Same seed: the lengths do not depend on the prompt kind.
    CHECK(int(r.prompt_token_ids.size()) == CountWords((*text)[i].prompt));
    for (int id : r.prompt_token_ids) CHECK((id >= 1 && id < 50));
  }
  options.vocab_size = 0;
  CHECK_FALSE(GenerateWorkload(options).ok());
}

TEST_CASE("length distributions sample within their bounds and parse strictly") {
  std::mt19937_64 rng(3);
  const LengthDist normal = *ParseLengthDist("x", "normal:100:10");
  double sum = 0;
  for (int i = 0; i < 4000; ++i) sum += normal.Sample(rng);
  // Standard error of the mean: 10 / sqrt(4000) = 0.16; 1.0 is over six of them.
  CHECK(sum / 4000 == Approx(100).margin(1.0));
  const LengthDist tiny = *ParseLengthDist("x", "normal:1:50");
  for (int i = 0; i < 200; ++i) CHECK(tiny.Sample(rng) >= 1);
  CHECK(LengthDist::Fixed(7).Sample(rng) == 7);
  for (const char* bad : {"uniform:5", "uniform:9:5", "uniform:0:3", "normal:10:-1", "poisson:1:2", "uniform:a:b", ""}) {
    const auto parsed = ParseLengthDist("prompt-tokens-dist", bad);
    CHECK_FALSE(parsed.ok());
    if (!parsed.ok()) CHECK(std::string(parsed.status().message()).find("--prompt-tokens-dist") != std::string::npos);
  }
}

TEST_CASE("datasets load text and token-id prompts and cycle to the requested count") {
  const std::string path = WriteTemp("dataset.jsonl",
                                     "{\"prompt\": \"def f(x):\", \"max_tokens\": 5}\n"
                                     "\n"
                                     "{\"prompt\": [3, 4, 5], \"session_id\": \"chat-1\"}\n");
  WorkloadOptions options;
  options.count = 5;
  options.max_tokens = LengthDist::Fixed(9);
  const auto loaded = LoadDatasetWorkload(path, options);
  REQUIRE(loaded.ok());
  REQUIRE(loaded->size() == 5);
  CHECK((*loaded)[0].prompt == "def f(x):");
  CHECK((*loaded)[0].max_tokens == 5);
  CHECK((*loaded)[1].prompt_token_ids == std::vector<int>{3, 4, 5});
  CHECK((*loaded)[1].max_tokens == 9);
  CHECK((*loaded)[0].session_id.empty());
  CHECK((*loaded)[1].session_id == "chat-1");
  CHECK((*loaded)[4].prompt == "def f(x):");

  const std::string bad = WriteTemp("bad.jsonl", "{\"prompt\": \"ok\"}\n{\"prompt\": 5}\n");
  const auto failed = LoadDatasetWorkload(bad, options);
  REQUIRE_FALSE(failed.ok());
  CHECK(std::string(failed.status().message()).find("bad.jsonl:2") != std::string::npos);
  CHECK_FALSE(LoadDatasetWorkload(WriteTemp("notjson.jsonl", "{oops\n"), options).ok());
  CHECK_FALSE(LoadDatasetWorkload(WriteTemp("empty.jsonl", "\n"), options).ok());
  CHECK_FALSE(LoadDatasetWorkload(WriteTemp("session.jsonl", "{\"prompt\": \"x\", \"session_id\": 7}\n"), options).ok());
  CHECK(LoadDatasetWorkload("/nonexistent/x.jsonl", options).status().code() == absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace xlserve::loadtest
