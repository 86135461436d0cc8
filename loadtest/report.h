// Reports of load-test runs: a text table for people and JSON for tools.
#pragma once

#include <optional>
#include <string>

#include "nlohmann/json.hpp"
#include "loadtest/stats.h"

namespace xlserve::loadtest {

// One finished run: how it was driven and what it measured.
struct RunRecord {
  std::string target;          // LoadClient::Target()
  std::optional<double> rate;  // open loop; absent: closed loop at `concurrency`
  int concurrency = 0;
  int warmup_sent = 0;
  int not_sent = 0;
  Slo slo;
  RunStats stats;
};

// A fixed-width table (ends in a newline).
std::string FormatTable(const RunRecord& run);

nlohmann::json RunToJson(const RunRecord& run);

}  // namespace xlserve::loadtest
