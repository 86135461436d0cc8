#include "loadtest/loadtest_settings.h"

#include <tuple>

namespace xlserve::loadtest {
namespace {

using S = LoadtestSettings;
// Bounds that keep a typo from starting a run that never ends or exhausts memory.
constexpr double kMaxRequests = 1'000'000;
constexpr double kMaxConcurrency = 4096;
constexpr double kLarge = 1 << 30;
constexpr settings::Range kPositive = {1e-9, 1e12};

}  // namespace

const settings::SettingsTable<LoadtestSettings>& LoadtestSettingsTable() {
  static const settings::SettingsTable<LoadtestSettings> table = {
      {"grpc", &S::grpc, "xlserve gRPC address HOST:PORT"},
      {"http", &S::http, "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000"},
      {"api_key", &S::api_key, "bearer token for --http"},
      {"model_name", &S::model_name, "model name sent with each request (default: the server's)"},
      {"rate", &S::rate, "open loop: Poisson arrivals, requests per second", kPositive},
      {"concurrency", &S::concurrency, "closed loop: requests kept in flight", {1, kMaxConcurrency}},
      {"sweep", &S::sweep, "open-loop runs at each of these comma-separated rates", kPositive},
      {"num_requests", &S::num_requests, "measured requests per run", {1, kMaxRequests}},
      {"warmup", &S::warmup, "requests sent first and left out of the statistics", {0, kMaxRequests}},
      {"duration_s", &S::duration_s, "seconds per run after which no request is sent", kPositive},
      {"request_timeout_s", &S::request_timeout_s, "seconds before a request is abandoned", kPositive},
      {"max_in_flight", &S::max_in_flight, "open loop: most requests in flight at once", {1, kLarge}},
      {"prompt_tokens", &S::prompt_tokens, "prompt length in tokens (text: words of code)", {1, kLarge}},
      {"prompt_tokens_dist", &S::prompt_tokens_dist, "prompt lengths: uniform:a:b or normal:mu:sigma"},
      {"max_tokens", &S::max_tokens, "output tokens per request", {1, kLarge}},
      {"max_tokens_dist", &S::max_tokens_dist, "output lengths: uniform:a:b or normal:mu:sigma"},
      {"dataset", &S::dataset, "JSONL file of {\"prompt\": text or ids, \"max_tokens\": n}"},
      {"token_ids", &S::token_ids, "prompts of random token ids instead of code-like text"},
      {"vocab_size", &S::vocab_size, "token ids are drawn below this (0: ask the gRPC server)", {0, kLarge}},
      {"ignore_eos", &S::ignore_eos, "generate exactly max tokens (--ignore-eos=false: stop at EOS)"},
      {"temperature", &S::temperature, "sampling temperature (default: the server's)", {0, 1e6}},
      {"seed", &S::seed, "seed of the workload and the arrivals"},
      {"slo_ttft_ms", &S::slo_ttft_ms, "goodput target: time to first token, ms", kPositive},
      {"slo_tpot_ms", &S::slo_tpot_ms, "goodput target: time per output token, ms", kPositive},
      {"json", &S::json, "write the results as JSON here"},
      {"sweep_csv", &S::sweep_csv, "with --sweep: write one CSV row per rate here"},
      {"plot", &S::plot, "with --sweep: write the latency-vs-throughput plot here (.svg)"},
  };
  return table;
}

absl::StatusOr<LoadtestConfig> MakeLoadtestConfig(const LoadtestSettings& s) {
  if (absl::Status st = settings::CheckRanges(LoadtestSettingsTable(), s); !st.ok()) return st;
  if ((!s.sweep_csv.empty() || !s.plot.empty()) && s.sweep.empty()) {
    return absl::InvalidArgumentError("--sweep-csv and --plot need --sweep");
  }
  LoadtestConfig c;
  c.grpc_target = s.grpc;
  c.http_url = s.http;
  c.api_key = s.api_key;
  c.request.model = s.model_name;
  c.request.temperature = s.temperature;
  c.request.ignore_eos = s.ignore_eos;
  c.rate = s.rate;
  c.concurrency = s.concurrency;
  c.sweep_rates = s.sweep;
  c.num_requests = s.num_requests;
  c.warmup = s.warmup;
  c.duration_s = s.duration_s;
  c.request_timeout_s = s.request_timeout_s;
  c.max_in_flight = s.max_in_flight;
  c.prompt_tokens = LengthDist::Fixed(s.prompt_tokens);
  c.max_tokens = LengthDist::Fixed(s.max_tokens);
  for (auto [flag, text, dist] : {std::tuple{"prompt-tokens-dist", &s.prompt_tokens_dist, &c.prompt_tokens},
                                  std::tuple{"max-tokens-dist", &s.max_tokens_dist, &c.max_tokens}}) {
    if (text->empty()) continue;
    absl::StatusOr<LengthDist> parsed = ParseLengthDist(flag, *text);
    if (!parsed.ok()) return parsed.status();
    *dist = *parsed;
  }
  c.dataset = s.dataset;
  c.prompt_kind = s.token_ids ? PromptKind::kTokenIds : PromptKind::kText;
  c.vocab_size = s.vocab_size;
  c.seed = s.seed;
  c.slo = {s.slo_ttft_ms, s.slo_tpot_ms};
  if (absl::Status st = ValidateConfig(c); !st.ok()) return st;
  return c;
}

}  // namespace xlserve::loadtest
