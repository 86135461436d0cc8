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
// Bounds that keep a typo from starting a run that never ends or exhausts memory.
constexpr int kMaxRequests = 1'000'000;
constexpr int kMaxConcurrency = 4096;

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
  record.stats = ComputeStats(run.measured, run.duration_s, config.slo);
  return record;
}

}  // namespace

absl::Status ValidateConfig(const LoadtestConfig& c) {
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (c.grpc_target.empty() == c.http_url.empty()) return bad("give exactly one target: --grpc HOST:PORT or --http URL");
  if (!c.api_key.empty() && c.http_url.empty()) return bad("--api-key applies to --http targets only");
  const int modes = int(c.rate.has_value()) + int(c.concurrency.has_value()) + int(!c.sweep_rates.empty());
  if (modes != 1) return bad("give exactly one of --rate, --concurrency and --sweep");
  if (c.rate && !(*c.rate > 0)) return bad("--rate must be > 0");
  for (double r : c.sweep_rates) {
    if (!(r > 0)) return bad("--sweep rates must be > 0");
  }
  if (c.concurrency && (*c.concurrency < 1 || *c.concurrency > kMaxConcurrency)) {
    return bad("--concurrency must be in [1, " + std::to_string(kMaxConcurrency) + "]");
  }
  if (c.num_requests < 1 || c.num_requests > kMaxRequests) {
    return bad("--num-requests must be in [1, " + std::to_string(kMaxRequests) + "]");
  }
  if (c.warmup < 0 || c.warmup > kMaxRequests) return bad("--warmup must be in [0, " + std::to_string(kMaxRequests) + "]");
  if (!(c.duration_s > 0)) return bad("--duration must be > 0");
  if (!(c.request_timeout_s > 0)) return bad("--request-timeout-s must be > 0");
  if (c.max_in_flight < 1) return bad("--max-in-flight must be >= 1");
  if (c.slo.ttft_ms && !(*c.slo.ttft_ms > 0)) return bad("--slo-ttft must be > 0");
  if (c.slo.tpot_ms && !(*c.slo.tpot_ms > 0)) return bad("--slo-tpot must be > 0");
  if (c.prompt_kind == PromptKind::kTokenIds && c.dataset.empty() && c.vocab_size == 0 && c.grpc_target.empty()) {
    return bad("--token-ids with --http needs --vocab-size");
  }
  if (c.vocab_size < 0) return bad("--vocab-size must be >= 0");
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
