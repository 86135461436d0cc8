// RunSpeculativeBench against FakeBackend: what a row counts inside its timed passes.
#include "bench/speculative_bench.h"

#include <catch2/catch.hpp>

#include "engine/testing/fake_backend.h"

namespace xlserve::bench {
namespace {

using testing::FakeBackend;
using testing::FakeBackendOptions;

TEST_CASE("a row counts the graph builds of its timed passes only, where the backend counts them") {
  FakeBackendOptions o;
  o.mtp_heads = 3;
  o.wrong_draft_every = 3;
  FakeBackend backend(o);
  REQUIRE(backend.AllocateSlots(4).ok());
  SpeculativeBenchOptions options;
  options.batch_sizes = {2};
  options.sequences = 4;
  options.runs = 2;
  options.new_tokens = 12;
  options.prompts = RandomPrompts(PromptsNeeded(options), 5, 64, 3);

  absl::StatusOr<std::vector<SpeculativeBenchRow>> uncounted = RunSpeculativeBench(&backend, options);
  REQUIRE(uncounted.ok());
  for (const SpeculativeBenchRow& row : *uncounted) CHECK(row.graph_builds == -1);

  // As if every Forward built a graph: prefills (one a sequence) and warm-up's passes stay out,
  // each timed pass (one Forward) is counted once, and the runs are pooled.
  options.graph_builds = [&backend] { return static_cast<int64_t>(backend.forwards.size()); };
  absl::StatusOr<std::vector<SpeculativeBenchRow>> counted = RunSpeculativeBench(&backend, options);
  REQUIRE(counted.ok());
  REQUIRE(counted->size() == 3);
  for (const SpeculativeBenchRow& row : *counted) {
    INFO(row.mode);
    CHECK(row.runs == 2);
    CHECK(row.passes > 0);
    CHECK(row.graph_builds == row.passes);
  }
  CHECK(FormatSpeculativeTable(*counted).find("graphs") != std::string::npos);
  CHECK(SpeculativeRowsToJson(*counted)[0]["graph_builds"] == (*counted)[0].passes);
  CHECK(SpeculativeRowsToJson(*uncounted)[0]["graph_builds"].is_null());
}

}  // namespace
}  // namespace xlserve::bench
