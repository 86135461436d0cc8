// Reports of a rate sweep (one open-loop run per offered rate): a CSV table and a
// latency-vs-throughput SVG plot.
#pragma once

#include <string>
#include <vector>

#include "loadtest/report.h"

namespace xlserve::loadtest {

// A header line and one row per run, in the given order: offered rate, achieved throughput,
// goodput, errors and the TTFT/TPOT/ITL/E2E summaries in milliseconds.
std::string SweepCsv(const std::vector<RunRecord>& runs);

// Two panels, TTFT and TPOT, each with p50 and p99 against achieved request throughput; the
// points follow the offered rates in ascending order, so a saturated server shows as a line
// that turns upward (or back) at its capacity.
std::string SweepSvg(const std::vector<RunRecord>& runs, const std::string& target);

}  // namespace xlserve::loadtest
