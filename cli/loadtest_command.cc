// `xlserve loadtest`: drives a server (gRPC) or an OpenAI-compatible gateway (REST) with an
// open- or closed-loop workload and reports latency, throughput, goodput and errors.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <tuple>

#include "cli/commands.h"
#include "cli/flags.h"
#include "loadtest/loadtest.h"
#include "loadtest/progress.h"
#include "loadtest/sweep_report.h"

namespace xlserve::cli {
namespace {

absl::Status ParseRateList(const std::string& text, std::vector<double>* out) {
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    double v = 0;
    const char* end = item.data() + item.size();
    auto [ptr, ec] = std::from_chars(item.data(), end, v);
    if (item.empty() || ec != std::errc() || ptr != end || !std::isfinite(v)) {
      return absl::InvalidArgumentError("--sweep: '" + item + "' in '" + text + "' is not a number");
    }
    out->push_back(v);
  }
  if (out->empty()) return absl::InvalidArgumentError("--sweep: empty list");
  return absl::OkStatus();
}

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
  loadtest::LoadtestConfig config;
  std::string prompt_dist, max_tokens_dist, sweep, json_path, csv_path, plot_path;
  int prompt_tokens = 32, max_tokens = 16;
  bool token_ids = false;
  std::optional<double> rate, slo_ttft, slo_tpot, temperature;
  std::optional<int> concurrency;
  FlagSet flags(
      "xlserve loadtest",
      "(--grpc HOST:PORT | --http URL) (--rate R | --concurrency C | --sweep R1,R2,...) [flags]",
      "Sends a bounded workload (--num-requests after --warmup, within --duration) to an xlserve\n"
      "server over gRPC or to an OpenAI-compatible gateway (POST /v1/completions, streaming), open\n"
      "loop (Poisson arrivals at --rate) or closed loop (--concurrency users), and reports TTFT,\n"
      "TPOT, ITL and E2E latency (mean, p50, p90, p99 in ms), throughput, goodput under\n"
      "--slo-ttft/--slo-tpot and errors by gRPC code or HTTP status. --sweep runs once per rate and\n"
      "writes --sweep-csv and a latency-vs-throughput --plot (SVG). Exit 1 when a run has no\n"
      "successful request.");
  flags.AddString("grpc", &config.grpc_target, "xlserve gRPC address HOST:PORT");
  flags.AddString("http", &config.http_url, "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000");
  flags.AddString("api-key", &config.api_key, "bearer token for --http");
  flags.AddString("model", &config.request.model, "model name sent with each request (default: the server's)");
  flags.AddOptionalDouble("rate", &rate, "open loop: Poisson arrivals, requests per second");
  flags.AddOptionalInt("concurrency", &concurrency, "closed loop: requests kept in flight");
  flags.AddString("sweep", &sweep, "open-loop runs at each of these comma-separated rates");
  flags.AddInt("num-requests", &config.num_requests, "measured requests per run");
  flags.AddInt("warmup", &config.warmup, "requests sent first and left out of the statistics");
  flags.AddDouble("duration", &config.duration_s, "seconds per run after which no request is sent");
  flags.AddDouble("request-timeout-s", &config.request_timeout_s, "seconds before a request is abandoned");
  flags.AddInt("max-in-flight", &config.max_in_flight, "open loop: most requests in flight at once");
  flags.AddInt("prompt-tokens", &prompt_tokens, "prompt length in tokens (text: words of code)");
  flags.AddString("prompt-tokens-dist", &prompt_dist, "prompt lengths: uniform:a:b or normal:mu:sigma");
  flags.AddInt("max-tokens", &max_tokens, "output tokens per request");
  flags.AddString("max-tokens-dist", &max_tokens_dist, "output lengths: uniform:a:b or normal:mu:sigma");
  flags.AddString("dataset", &config.dataset, "JSONL file of {\"prompt\": text or ids, \"max_tokens\": n}");
  flags.AddBool("token-ids", &token_ids, "prompts of random token ids instead of code-like text");
  flags.AddInt("vocab-size", &config.vocab_size, "token ids are drawn below this (0: ask the gRPC server)");
  flags.AddBool("ignore-eos", &config.request.ignore_eos, "generate exactly max tokens (--ignore-eos=false: stop at EOS)");
  flags.AddOptionalDouble("temperature", &temperature, "sampling temperature (default: the server's)");
  flags.AddUint64("seed", &config.seed, "seed of the workload and the arrivals");
  flags.AddOptionalDouble("slo-ttft", &slo_ttft, "goodput target: time to first token, ms");
  flags.AddOptionalDouble("slo-tpot", &slo_tpot, "goodput target: time per output token, ms");
  flags.AddString("json", &json_path, "write the results as JSON here");
  flags.AddString("sweep-csv", &csv_path, "with --sweep: write one CSV row per rate here");
  flags.AddString("plot", &plot_path, "with --sweep: write the latency-vs-throughput plot here (.svg)");
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("loadtest", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }

  config.rate = rate;
  config.concurrency = concurrency;
  config.request.temperature = temperature;
  config.slo = {slo_ttft, slo_tpot};
  config.prompt_kind = token_ids ? loadtest::PromptKind::kTokenIds : loadtest::PromptKind::kText;
  if (!sweep.empty()) {
    if (absl::Status st = ParseRateList(sweep, &config.sweep_rates); !st.ok()) {
      return ReportError("loadtest", std::string(st.message()));
    }
  }
  if ((!csv_path.empty() || !plot_path.empty()) && sweep.empty()) {
    return ReportError("loadtest", "--sweep-csv and --plot need --sweep");
  }
  if (prompt_tokens < 1 || max_tokens < 1) return ReportError("loadtest", "--prompt-tokens and --max-tokens must be >= 1");
  config.prompt_tokens = loadtest::LengthDist::Fixed(prompt_tokens);
  config.max_tokens = loadtest::LengthDist::Fixed(max_tokens);
  for (auto [flag, text, dist] : {std::tuple{"prompt-tokens-dist", &prompt_dist, &config.prompt_tokens},
                                  std::tuple{"max-tokens-dist", &max_tokens_dist, &config.max_tokens}}) {
    if (text->empty()) continue;
    absl::StatusOr<loadtest::LengthDist> parsed = loadtest::ParseLengthDist(flag, *text);
    if (!parsed.ok()) return ReportError("loadtest", std::string(parsed.status().message()));
    *dist = *parsed;
  }
  if (absl::Status st = loadtest::ValidateConfig(config); !st.ok()) {
    return ReportError("loadtest", std::string(st.message()));
  }

  absl::StatusOr<std::vector<loadtest::RunRecord>> runs =
      loadtest::RunLoadtest(config, stderr, loadtest::IsTerminal(stderr));
  if (!runs.ok()) return ReportError("loadtest", std::string(runs.status().message()));

  for (const loadtest::RunRecord& run : *runs) std::fputs((loadtest::FormatTable(run) + "\n").c_str(), stdout);
  std::fflush(stdout);
  absl::Status written = absl::OkStatus();
  if (!json_path.empty()) {
    nlohmann::json j;
    if (config.sweep_rates.empty()) {
      j = loadtest::RunToJson(runs->front());
    } else {
      j["sweep"] = nlohmann::json::array();
      for (const loadtest::RunRecord& run : *runs) j["sweep"].push_back(loadtest::RunToJson(run));
    }
    written.Update(WriteFile(json_path, j.dump(2) + "\n"));
  }
  if (!csv_path.empty()) written.Update(WriteFile(csv_path, loadtest::SweepCsv(*runs)));
  if (!plot_path.empty()) written.Update(WriteFile(plot_path, loadtest::SweepSvg(*runs, runs->front().target)));
  if (!written.ok()) return ReportError("loadtest", std::string(written.message()));
  for (const loadtest::RunRecord& run : *runs) {
    if (const std::string why = NothingSucceeded(run); !why.empty()) return ReportError("loadtest", why);
  }
  return 0;
}

}  // namespace xlserve::cli
