// `xlserve loadtest`: drives a server (gRPC) or an OpenAI-compatible gateway (REST) with an
// open- or closed-loop workload and reports latency, throughput, goodput and errors.
#include <cstdio>
#include <fstream>

#include "cli/commands.h"
#include "cli/flags.h"
#include "loadtest/loadtest.h"
#include "loadtest/loadtest_settings.h"
#include "loadtest/progress.h"
#include "loadtest/sweep_report.h"

namespace xlserve::cli {
namespace {

absl::Status WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  out.close();
  if (!out) return absl::UnavailableError("cannot write " + path);
  std::fprintf(stderr, "xlserve loadtest: wrote %s\n", path.c_str());
  return absl::OkStatus();
}

// Why a run produced nothing to measure, or "" when some request succeeded.
std::string NothingSucceeded(const loadtest::RunRecord& run) {
  const loadtest::RunStats& s = run.stats;
  if (s.succeeded > 0) return "";
  if (s.errors.empty()) return "no request was sent (" + run.target + ")";
  const auto& [key, count] = *s.errors.begin();
  return "all " + std::to_string(s.sent) + " requests to " + run.target + " failed (" + std::to_string(count) + "x " +
         key + ": " + s.error_sample.at(key) + ")";
}

}  // namespace

int RunLoadtest(const std::vector<std::string>& args) {
  loadtest::LoadtestSettings settings;
  FlagSet flags(
      "xlserve loadtest",
      "(--grpc HOST:PORT | --http URL) (--rate R | --concurrency C | --sweep R1,R2,...) [flags]",
      "Sends a bounded workload (--num-requests after --warmup, within --duration-s) to an\n"
      "xlserve server over gRPC or to an OpenAI-compatible gateway (POST /v1/completions,\n"
      "streaming), open loop (Poisson arrivals at --rate) or closed loop (--concurrency users),\n"
      "and reports TTFT, TPOT, ITL and E2E latency (mean, p50, p90, p99 in ms), throughput,\n"
      "goodput under --slo-ttft-ms/--slo-tpot-ms and errors by gRPC code or HTTP status. --sweep\n"
      "runs once per rate and writes --sweep-csv and a latency-vs-throughput --plot (SVG). Exit 1\n"
      "when a run has no successful request.");
  flags.Add(loadtest::LoadtestSettingsTable(), &settings);
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("loadtest", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  absl::StatusOr<loadtest::LoadtestConfig> made = loadtest::MakeLoadtestConfig(settings);
  if (!made.ok()) return ReportError("loadtest", std::string(made.status().message()));
  const loadtest::LoadtestConfig& config = *made;

  absl::StatusOr<std::vector<loadtest::RunRecord>> runs =
      loadtest::RunLoadtest(config, stderr, loadtest::IsTerminal(stderr));
  if (!runs.ok()) return ReportError("loadtest", std::string(runs.status().message()));

  for (const loadtest::RunRecord& run : *runs) std::fputs((loadtest::FormatTable(run) + "\n").c_str(), stdout);
  std::fflush(stdout);
  absl::Status written = absl::OkStatus();
  if (!settings.json.empty()) {
    nlohmann::json j;
    if (config.sweep_rates.empty()) {
      j = loadtest::RunToJson(runs->front());
    } else {
      j["sweep"] = nlohmann::json::array();
      for (const loadtest::RunRecord& run : *runs) j["sweep"].push_back(loadtest::RunToJson(run));
    }
    written.Update(WriteFile(settings.json, j.dump(2) + "\n"));
  }
  if (!settings.sweep_csv.empty()) written.Update(WriteFile(settings.sweep_csv, loadtest::SweepCsv(*runs)));
  if (!settings.plot.empty()) {
    written.Update(WriteFile(settings.plot, loadtest::SweepSvg(*runs, runs->front().target)));
  }
  if (!written.ok()) return ReportError("loadtest", std::string(written.message()));
  for (const loadtest::RunRecord& run : *runs) {
    if (const std::string why = NothingSucceeded(run); !why.empty()) return ReportError("loadtest", why);
  }
  return 0;
}

}  // namespace xlserve::cli
