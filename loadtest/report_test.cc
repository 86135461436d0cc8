#include <catch2/catch.hpp>
#include <regex>

#include "loadtest/report.h"
#include "loadtest/svg_plot.h"
#include "loadtest/sweep_report.h"

namespace xlserve::loadtest {
namespace {

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

RunRecord Record(double rate, double throughput, double ttft_p50, double ttft_p99) {
  RunRecord r;
  r.target = "grpc 127.0.0.1:1";
  r.rate = rate;
  r.stats.sent = r.stats.succeeded = 10;
  r.stats.duration_s = 10 / throughput;
  r.stats.request_throughput = throughput;
  r.stats.ttft_ms = {10, ttft_p50, ttft_p50, ttft_p99, ttft_p99};
  r.stats.tpot_ms = {10, 5, 5, 6, 7};
  return r;
}

TEST_CASE("nice ticks are round steps covering the range") {
  CHECK(NiceTicks(0, 7.3, 6) == std::vector<double>{0, 2, 4, 6, 8});
  CHECK(NiceTicks(0, 100, 6) == std::vector<double>{0, 20, 40, 60, 80, 100});
  const std::vector<double> small = NiceTicks(0, 0.013, 6);
  CHECK(small.front() == 0);
  CHECK(small.back() >= 0.013);
  CHECK(small.size() <= 8);
  CHECK(NiceTicks(0, 0, 6).size() >= 2);  // an empty range still gets an axis
}

TEST_CASE("the sweep plot has two panels with axes, ticks, four lines and legends") {
  const std::vector<RunRecord> runs = {Record(4, 3.9, 120, 300), Record(1, 1.0, 80, 150), Record(2, 2.0, 90, 200)};
  const std::string svg = SweepSvg(runs, "grpc 127.0.0.1:1");
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(Count(svg, "<g class=\"panel\">") == 2);
  CHECK(Count(svg, "<g class=\"axes\">") == 2);
  CHECK(Count(svg, "<g class=\"legend\">") == 2);
  CHECK(Count(svg, "<polyline class=\"series\"") == 4);
  CHECK(Count(svg, "<circle") == 12);
  CHECK(Count(svg, "<g") == Count(svg, "</g>"));
  CHECK(svg.find("TTFT (ms)") != std::string::npos);
  CHECK(svg.find("achieved throughput (requests/s)") != std::string::npos);
  CHECK(svg.find(">p99</text>") != std::string::npos);
  // Points follow the offered rates: the first TTFT point is the 1/s run (x = 1.0).
  std::smatch m;
  REQUIRE(std::regex_search(svg, m, std::regex("points=\"([0-9.]+),")));
  const double first_x = std::stod(m[1]);
  REQUIRE(std::regex_search(svg, m, std::regex("<circle cx=\"([0-9.]+)\"")));
  CHECK(std::stod(m[1]) == Approx(first_x));
  CHECK(RenderSvgPlot("a < b & c", {}).find("a &lt; b &amp; c") != std::string::npos);
}

TEST_CASE("the sweep CSV has a header and one row per run") {
  const std::string csv = SweepCsv({Record(1, 1.0, 80, 150), Record(2, 2.0, 90, 200)});
  CHECK(Count(csv, "\n") == 3);
  CHECK(csv.rfind("rate,sent,succeeded,failed,duration_s,request_throughput", 0) == 0);
  CHECK(csv.find("ttft_p99_ms") != std::string::npos);
  CHECK(csv.find("\n2,10,10,0,5.000,2.0000,") != std::string::npos);
}

TEST_CASE("the table and JSON carry the numbers and errors") {
  RunRecord r = Record(4, 3.9, 120, 300);
  r.slo.ttft_ms = 200;
  r.stats.errors["grpc UNAVAILABLE"] = 3;
  r.stats.error_sample["grpc UNAVAILABLE"] = "connection refused";
  const std::string table = FormatTable(r);
  CHECK(table.find("open loop, Poisson 4.00 req/s") != std::string::npos);
  CHECK(table.find("TTFT") != std::string::npos);
  CHECK(table.find("grpc UNAVAILABLE") != std::string::npos);
  CHECK(table.find("SLO TTFT <= 200 ms") != std::string::npos);
  const nlohmann::json j = RunToJson(r);
  CHECK(j["mode"] == "open");
  CHECK(j["rate"] == 4);
  CHECK(j["ttft_ms"]["p99"] == 300);
  CHECK(j["errors"]["grpc UNAVAILABLE"] == 3);
  CHECK(j["goodput"]["slo_ttft_ms"] == 200);
  CHECK(j["goodput"]["slo_tpot_ms"].is_null());
  CHECK(j["throughput"]["steady_output_tokens_per_s"].is_null());
  CHECK(table.find("steady") == std::string::npos);
}

TEST_CASE("a closed loop's table and JSON carry the steady window's rate") {
  RunRecord r = Record(4, 3.9, 120, 300);
  r.rate.reset();
  r.concurrency = 64;
  r.stats.steady_output_token_throughput = 8123.4;
  r.stats.steady_window_s = 31.5;
  const std::string table = FormatTable(r);
  CHECK(table.find("steady       8123.4 output tok/s over the 31.50 s in which all 64 users were busy") !=
        std::string::npos);
  const nlohmann::json j = RunToJson(r);
  CHECK(j["throughput"]["steady_output_tokens_per_s"] == Approx(8123.4));
  CHECK(j["throughput"]["steady_window_s"] == Approx(31.5));
}

}  // namespace
}  // namespace xlserve::loadtest
