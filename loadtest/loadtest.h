// A whole `xlserve loadtest` invocation: picks the client, builds the workload, and runs it once
// (open or closed loop) or once per rate of a sweep, showing progress on the way.
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loadtest/length_dist.h"
#include "loadtest/report.h"
#include "loadtest/request_options.h"
#include "loadtest/stats.h"
#include "loadtest/workload.h"

namespace xlserve::loadtest {

struct LoadtestConfig {
  // Exactly one target.
  std::string grpc_target;  // HOST:PORT of `xlserve serve`
  std::string http_url;     // an OpenAI-compatible server, e.g. http://127.0.0.1:8000
  std::string api_key;      // bearer token for http_url; empty: none
  RequestOptions request;

  // Exactly one mode: open loop at `rate`, closed loop at `concurrency`, or a sweep of rates.
  std::optional<double> rate;
  std::optional<int> concurrency;
  std::vector<double> sweep_rates;

  int num_requests = 100;  // measured requests per run, after `warmup` more
  int warmup = 0;
  double duration_s = 300;  // per run: no request is sent later than this
  double request_timeout_s = 60;
  int max_in_flight = 1024;

  LengthDist prompt_tokens = LengthDist::Fixed(32);
  LengthDist max_tokens = LengthDist::Fixed(16);
  std::string dataset;  // JSONL; replaces synthetic prompts when set
  PromptKind prompt_kind = PromptKind::kText;
  int vocab_size = 0;  // token-id prompts; 0: asked of the gRPC server
  uint64_t seed = 0;
  Slo slo;
};

// Checks the combinations of settings (their ranges are LoadtestSettingsTable's); the message
// names the flag at fault.
absl::Status ValidateConfig(const LoadtestConfig& config);

// Runs the configured load and returns one record per run (several for a sweep, in the order of
// sweep_rates). Progress goes to `progress` (borrowed), redrawn in place when `interactive`.
// Request failures are counted in the records, not returned as errors; errors are for what
// prevents running at all (bad config, unreadable dataset, no vocabulary size).
absl::StatusOr<std::vector<RunRecord>> RunLoadtest(const LoadtestConfig& config, std::FILE* progress,
                                                   bool interactive);

}  // namespace xlserve::loadtest
