#include "bench/interleaved_timing.h"

#include <catch2/catch.hpp>

namespace xlserve::bench {
namespace {

// Steps that advance a simulated clock by their cost times the device's slowness at that moment.
struct SimulatedDevice {
  double now = 0;  // seconds
  int calls = 0;
  std::function<double(int call, double now)> slowness = [](int, double) { return 1.0; };
  std::function<absl::Status()> Step(double seconds) {
    return [this, seconds] {
      now += seconds * slowness(calls++, now);
      return absl::OkStatus();
    };
  }
  std::function<double()> Clock() {
    return [this] { return now; };
  }
};

TEST_CASE("interleaved blocks give the cost ratio of two steps while the device slows down") {
  SimulatedDevice d;
  d.slowness = [](int, double now) { return 1.0 + 4 * now; };  // slower and slower
  const std::vector<std::function<absl::Status()>> kinds = {d.Step(1.1e-3), d.Step(2e-3)};
  auto t = TimeInterleaved(d.Step(1e-3), kinds, 2, 5, 10, d.Clock());
  REQUIRE(t.ok());
  REQUIRE(t->ratio.size() == 2);
  CHECK(t->ratio[0] == Approx(1.1).epsilon(0.003));
  CHECK(t->ratio[1] == Approx(2.0).epsilon(0.003));
  CHECK(t->ratio_min[0] <= t->ratio[0]);
  CHECK(t->ratio_max[0] >= t->ratio[0]);
  CHECK(t->ms[0] > 1.5 * 1.1);  // the kind's own time moved with the drift; its ratio did not
  // 2 + 2 x 2 warm-ups, then 5 rounds of 10 base + 2 x 10 kind calls, then 10 base calls.
  CHECK(d.calls == 6 + 5 * 30 + 10);
}

TEST_CASE("a stall in one block moves no median ratio") {
  SimulatedDevice d;
  // Every call of the second base block (calls 36-45, after the warm-ups and the first round)
  // takes 3x as long.
  d.slowness = [](int call, double) { return call >= 36 && call < 46 ? 3.0 : 1.0; };
  const std::vector<std::function<absl::Status()>> kinds = {d.Step(1.2e-3), d.Step(1.5e-3)};
  auto t = TimeInterleaved(d.Step(1e-3), kinds, 2, 5, 10, d.Clock());
  REQUIRE(t.ok());
  CHECK(t->base_ms == Approx(1.0));
  CHECK(t->ratio[0] == Approx(1.2));
  CHECK(t->ratio[1] == Approx(1.5));
  CHECK(t->ratio_min[0] < 1.0);  // the rounds beside the stall are seen, not hidden
}

TEST_CASE("interleaved timing rejects empty blocks and passes a step's error on") {
  SimulatedDevice d;
  const std::vector<std::function<absl::Status()>> kinds = {d.Step(1e-3)};
  CHECK(TimeInterleaved(d.Step(1e-3), kinds, 0, 0, 5, d.Clock()).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(TimeInterleaved(d.Step(1e-3), kinds, 0, 3, 0, d.Clock()).status().code() ==
        absl::StatusCode::kInvalidArgument);
  const std::vector<std::function<absl::Status()>> failing = {[] { return absl::InternalError("device lost"); }};
  const auto t = TimeInterleaved(d.Step(1e-3), failing, 1, 3, 5, d.Clock());
  CHECK(t.status().code() == absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace xlserve::bench
