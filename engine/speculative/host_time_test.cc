#include "engine/speculative/host_time.h"

#include <catch2/catch.hpp>

namespace xlserve {
namespace {

TEST_CASE("host time is the median of the recent samples, so one stalled cycle does not move it") {
  HostTime host;
  CHECK(host.Median() == 0);
  host.Add(0.3);
  CHECK(host.Median() == Approx(0.3));
  host.Add(0.1);
  CHECK(host.Median() == Approx(0.1));  // the lower middle of two
  host.Add(0.2);
  CHECK(host.Median() == Approx(0.2));
  for (int i = 0; i < 10; ++i) host.Add(0.05);
  host.Add(50.0);  // a stall
  CHECK(host.count() == 14);
  CHECK(host.Median() == Approx(0.05));
  host.Add(-0.01);  // a pass faster than warm-up's
  CHECK(host.count() == HostTime::kSamples);
  CHECK(host.Median() == Approx(0.05));
}

TEST_CASE("host time follows a change once most of its window has seen it") {
  HostTime host;
  for (int i = 0; i < HostTime::kSamples; ++i) host.Add(0.01);
  for (int i = 0; i < HostTime::kSamples / 2; ++i) host.Add(1.0);
  CHECK(host.Median() == Approx(0.01));  // 7 of 15: still the old work
  host.Add(1.0);
  CHECK(host.Median() == Approx(1.0));  // 8 of 15: the oldest samples were overwritten
}

}  // namespace
}  // namespace xlserve
