#include "loadtest/loadtest.h"

#include <cstdio>
#include <memory>

#include "loadtest/driver.h"
#include "loadtest/grpc_load_client.h"
#include "loadtest/openai_load_client.h"
#include "loadtest/progress.h"

namespace xlserve::loadtest {
namespace {

// Asking the server for its vocabulary should take a moment; longer means it is not there.
constexpr double kModelInfoTimeoutS = 10;

absl::StatusOr<std::unique_ptr<LoadClient>> MakeClient(const LoadtestConfig& config) {
  if (!config.grpc_target.empty()) return std::make_unique<GrpcLoadClient>(config.grpc_target, config.request);
  absl::StatusOr<CompletionsEndpoint> endpoint = ParseCompletionsUrl(config.http_url);
  if (!endpoint.ok()) return endpoint.status();
  return std::make_unique<OpenAiLoadClient>(*endpoint, config.api_key, config.request);
}

absl::StatusOr<std::vector<WorkloadRequest>> MakeWorkload(const LoadtestConfig& config) {
  WorkloadOptions options;
  options.count = config.warmup + config.num_requests;
  options.prompt_tokens = config.prompt_tokens;
  options.max_tokens = config.max_tokens;
  options.kind = config.prompt_kind;
  options.vocab_size = config.vocab_size;
  options.seed = config.seed;
  if (!config.dataset.empty()) return LoadDatasetWorkload(config.dataset, options);
  if (options.kind == PromptKind::kTokenIds && options.vocab_size == 0) {
    absl::StatusOr<int> vocab = QueryVocabSize(config.grpc_target, kModelInfoTimeoutS);
    if (!vocab.ok()) return vocab.status();
    options.vocab_size = *vocab;
  }
  return GenerateWorkload(options);
}

std::string RateLabel(double rate) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "rate %g/s", rate);
  return buf;
}

RunRecord RunOnce(LoadClient& client, const std::vector<WorkloadRequest>& workload, const LoadtestConfig& config,
                  const LoadOptions& options, const std::string& label, std::FILE* progress_out, bool interactive) {
  LoadRun run;
  {
    Progress progress(progress_out, interactive, label, int(workload.size()));
    run = RunLoad(client, workload, options, [&](const RequestResult& r) { progress.RequestDone(r.ok); });
  }
  RunRecord record;
  record.target = client.Target();
  record.rate = options.rate;
  record.concurrency = options.rate ? 0 : options.concurrency;
  record.warmup_sent = run.warmup_sent;
  record.not_sent = run.not_sent;
  record.slo = config.slo;
  record.stats = ComputeStats(run.measured, run.duration_s, config.slo, run.steady);
  return record;
}

}  // namespace

absl::Status ValidateConfig(const LoadtestConfig& c) {
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (c.grpc_target.empty() == c.http_url.empty()) return bad("give exactly one target: --grpc HOST:PORT or --http URL");
  if (!c.api_key.empty() && c.http_url.empty()) return bad("--api-key applies to --http targets only");
  const int modes = int(c.rate.has_value()) + int(c.concurrency.has_value()) + int(!c.sweep_rates.empty());
  if (modes != 1) return bad("give exactly one of --rate, --concurrency and --sweep");
  if (c.prompt_kind == PromptKind::kTokenIds && c.dataset.empty() && c.vocab_size == 0 && c.grpc_target.empty()) {
    return bad("--token-ids with --http needs --vocab-size");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RunRecord>> RunLoadtest(const LoadtestConfig& config, std::FILE* progress,
                                                   bool interactive) {
  if (absl::Status st = ValidateConfig(config); !st.ok()) return st;
  absl::StatusOr<std::unique_ptr<LoadClient>> client = MakeClient(config);
  if (!client.ok()) return client.status();
  absl::StatusOr<std::vector<WorkloadRequest>> workload = MakeWorkload(config);
  if (!workload.ok()) return workload.status();

  LoadOptions options;
  options.warmup = config.warmup;
  options.duration_s = config.duration_s;
  options.request_timeout_s = config.request_timeout_s;
  options.seed = config.seed;
  options.max_in_flight = config.max_in_flight;
  std::vector<RunRecord> records;
  if (config.concurrency) {
    options.concurrency = *config.concurrency;
    records.push_back(RunOnce(**client, *workload, config, options,
                              "concurrency " + std::to_string(*config.concurrency), progress, interactive));
    return records;
  }
  const std::vector<double> rates = config.rate ? std::vector<double>{*config.rate} : config.sweep_rates;
  for (double rate : rates) {
    options.rate = rate;
    records.push_back(RunOnce(**client, *workload, config, options, RateLabel(rate), progress, interactive));
  }
  return records;
}

}  // namespace xlserve::loadtest
