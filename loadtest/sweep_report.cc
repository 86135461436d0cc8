#include "loadtest/sweep_report.h"

#include <algorithm>
#include <cstdio>

#include "loadtest/svg_plot.h"

namespace xlserve::loadtest {
namespace {

constexpr const char* kP50Color = "#1f77b4";
constexpr const char* kP99Color = "#d62728";

std::string Cells(const LatencySummary& s) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), ",%.3f,%.3f,%.3f,%.3f", s.mean, s.p50, s.p90, s.p99);
  return buf;
}

std::vector<const RunRecord*> ByRate(const std::vector<RunRecord>& runs) {
  std::vector<const RunRecord*> sorted;
  for (const RunRecord& r : runs) sorted.push_back(&r);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const RunRecord* a, const RunRecord* b) { return a->rate.value_or(0) < b->rate.value_or(0); });
  return sorted;
}

}  // namespace

std::string SweepCsv(const std::vector<RunRecord>& runs) {
  std::string csv = "rate,sent,succeeded,failed,duration_s,request_throughput,output_token_throughput,goodput_fraction,"
                    "goodput_rate";
  for (const char* m : {"ttft", "tpot", "itl", "e2e"}) {
    for (const char* q : {"mean", "p50", "p90", "p99"}) csv += std::string(",") + m + "_" + q + "_ms";
  }
  csv += "\n";
  for (const RunRecord& r : runs) {
    const RunStats& s = r.stats;
    char buf[256];
    std::snprintf(buf, sizeof(buf), "%g,%d,%d,%d,%.3f,%.4f,%.3f,%.4f,%.4f", r.rate.value_or(0), s.sent, s.succeeded,
                  s.failed, s.duration_s, s.request_throughput, s.output_token_throughput, s.goodput_fraction,
                  s.goodput_rate);
    csv += buf + Cells(s.ttft_ms) + Cells(s.tpot_ms) + Cells(s.itl_ms) + Cells(s.e2e_ms) + "\n";
  }
  return csv;
}

std::string SweepSvg(const std::vector<RunRecord>& runs, const std::string& target) {
  auto series = [&](const char* name, const char* color, bool dashed, auto metric) {
    PlotSeries s{name, color, dashed, {}};
    for (const RunRecord* r : ByRate(runs)) {
      if (r->stats.succeeded > 0) s.points.emplace_back(r->stats.request_throughput, metric(r->stats));
    }
    return s;
  };
  const std::string x_label = "achieved throughput (requests/s)";
  PlotPanel ttft{"Time to first token", x_label, "TTFT (ms)",
                 {series("p50", kP50Color, false, [](const RunStats& s) { return s.ttft_ms.p50; }),
                  series("p99", kP99Color, true, [](const RunStats& s) { return s.ttft_ms.p99; })}};
  PlotPanel tpot{"Time per output token", x_label, "TPOT (ms)",
                 {series("p50", kP50Color, false, [](const RunStats& s) { return s.tpot_ms.p50; }),
                  series("p99", kP99Color, true, [](const RunStats& s) { return s.tpot_ms.p99; })}};
  return RenderSvgPlot("xlserve latency vs throughput (" + target + ")", {ttft, tpot});
}

}  // namespace xlserve::loadtest
