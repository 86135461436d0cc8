#include "bench/speculative_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <span>

#include "engine/batch_decoder.h"
#include "engine/state_cache.h"
#include "engine/warm_up.h"
#include "base/status_macros.h"

namespace xlserve::bench {
namespace {

// Rounds of `batch` (>= 1) sequences that decode at least options.sequences.
int Rounds(const SpeculativeBenchOptions& options, int batch) {
  return std::max(1, (options.sequences + batch - 1) / batch);
}

// Prefills prompts [first, first + batch) into slots of `cache` and adds them to `decoder`.
absl::StatusOr<std::vector<int>> AddSequences(Backend* backend, const SpeculativeBenchOptions& options, int first,
                                              int batch, SpeculationMode mode, StateCache& cache,
                                              BatchDecoder& decoder, std::vector<int>& slots) {
  std::vector<int> ids;
  for (int i = first; i < first + batch; ++i) {
    GenerationRequest request;
    request.prompt_ids = options.prompts[i];
    request.max_new_tokens = options.new_tokens;
    request.speculation = mode;
    request.num_draft = options.num_draft;
    ASSIGN_OR_RETURN(const int slot, cache.Acquire());
    slots.push_back(slot);
    SequenceInput in;
    in.slot = slot;
    in.tokens = request.prompt_ids;
    in.mtp_heads = decoder.SpeculationEnabled(request);
    ForwardOutput out;
    RETURN_IF_ERROR(backend->Forward(std::span<const SequenceInput>(&in, 1), &out));
    ASSIGN_OR_RETURN(const int id, decoder.Add(slot, request, out, 0));
    ids.push_back(id);
  }
  return ids;
}

// As a server does before serving: each step shape's one-time work (GEMM choices, graphs) stays
// out of the timed steps. Returns the step costs `auto` weighs.
absl::StatusOr<StepCosts> WarmUpBatch(Backend* backend, const SpeculativeBenchOptions& options, int batch) {
  int longest = 1;
  for (int i = 0; i < Rounds(options, batch) * batch; ++i) {
    longest = std::max(longest, static_cast<int>(options.prompts[i].size()));
  }
  StepCosts costs;
  RETURN_IF_ERROR(WarmUp(backend, WarmUpOptions{batch, std::max(longest, batch * (1 + options.num_draft) + 1),
                                                options.num_draft}, {}, &costs));
  if (!costs.empty()) {
    std::string line = "bench: batch " + std::to_string(batch) + " step costs (warm-up replays): plain " +
                       std::to_string(costs.Plain(batch).value_or(0) * 1e3) + " ms";
    for (int len = 1; len <= 1 + options.num_draft; ++len) {
      line += ", verify L=" + std::to_string(len) + " " + std::to_string(costs.Verify(batch, len).value_or(0) * 1e3);
    }
    std::fprintf(stderr, "%s ms\n", line.c_str());
  }
  return costs;
}

// One run of one mode: a fresh decoder (nothing learnt from earlier runs) over every round.
absl::StatusOr<SpeculativeBenchRow> RunOne(Backend* backend, const SpeculativeBenchOptions& options, int batch,
                                           SpeculationMode mode, const char* mode_name, const StepCosts& costs,
                                           StateCache& cache) {
  const int rounds = Rounds(options, batch);
  std::optional<ReplayedAcceptance> replay;
  BatchDecoder decoder(backend);
  decoder.SetStepCosts(costs);
  if (options.replayed_acceptance && mode != SpeculationMode::kOff) {
    ASSIGN_OR_RETURN(replay, ReplayedAcceptance::Create(*options.replayed_acceptance, options.replay_seed));
    decoder.SetAcceptanceSource([&replay](int drafts) { return replay->Draw(drafts); });
  }
  SpeculativeBenchRow row;
  row.batch = batch;
  row.mode = mode_name;
  row.sequences = rounds * batch;
  row.runs = 1;
  using Clock = std::chrono::steady_clock;
  if (options.graph_builds) row.graph_builds = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<int> slots;
    ASSIGN_OR_RETURN(const std::vector<int> ids,
                     AddSequences(backend, options, round * batch, batch, mode, cache, decoder, slots));
    auto drafted = [&] {
      int64_t n = 0;
      for (int id : ids) n += decoder.result(id).drafted_tokens;
      return n;
    };
    int64_t drafted_before = drafted();
    // Only the passes are timed: counting the drafts between them stays out of the tokens/s.
    while (decoder.has_unfinished()) {
      const int64_t builds_before = options.graph_builds ? options.graph_builds() : 0;
      const auto pass_start = Clock::now();
      RETURN_IF_ERROR(decoder.Step());
      const double seconds = std::chrono::duration<double>(Clock::now() - pass_start).count();
      if (options.graph_builds) row.graph_builds += options.graph_builds() - builds_before;
      ++row.passes;
      const int64_t drafted_after = drafted();
      if (drafted_after > drafted_before) {
        ++row.drafting_passes;
        row.drafting_seconds += seconds;
      } else {
        row.plain_seconds += seconds;
      }
      drafted_before = drafted_after;
    }
    for (int id : ids) {
      const GenerationResult r = decoder.Remove(id);
      // The first token comes from prefill, so decode passes produced the rest.
      row.tokens += static_cast<int64_t>(r.tokens.size()) - 1;
      row.sequence_steps += r.steps;
      row.drafted += r.drafted_tokens;
      row.accepted += r.accepted_drafts;
      row.acceptance.Add(r.acceptance);
    }
    for (int slot : slots) RETURN_IF_ERROR(cache.Release(slot));
  }
  row.decode_seconds = row.drafting_seconds + row.plain_seconds;
  row.run_tokens_per_second = {row.tokens_per_second()};
  return row;
}

// `run` added to the pooled `row` of the same batch and mode.
void Pool(const SpeculativeBenchRow& run, SpeculativeBenchRow* row) {
  row->runs += run.runs;
  row->sequences += run.sequences;
  row->tokens += run.tokens;
  row->sequence_steps += run.sequence_steps;
  row->passes += run.passes;
  row->drafted += run.drafted;
  row->accepted += run.accepted;
  row->decode_seconds += run.decode_seconds;
  row->drafting_passes += run.drafting_passes;
  row->drafting_seconds += run.drafting_seconds;
  row->plain_seconds += run.plain_seconds;
  row->acceptance.Add(run.acceptance);
  if (row->graph_builds >= 0) row->graph_builds += run.graph_builds;
  row->run_tokens_per_second.insert(row->run_tokens_per_second.end(), run.run_tokens_per_second.begin(),
                                    run.run_tokens_per_second.end());
}

// Each row's run_speedups and median_speedup against the `off` row among `rows` (one batch).
void SetRunSpeedups(std::span<SpeculativeBenchRow> rows) {
  const auto off = std::find_if(rows.begin(), rows.end(), [](const auto& r) { return r.mode == "off"; });
  if (off == rows.end()) return;
  for (auto& r : rows) {
    for (size_t i = 0; i < r.run_tokens_per_second.size() && i < off->run_tokens_per_second.size(); ++i) {
      const double base = off->run_tokens_per_second[i];
      r.run_speedups.push_back(base > 0 ? r.run_tokens_per_second[i] / base : 0.0);
    }
    std::vector<double> sorted = r.run_speedups;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    r.median_speedup = n == 0 ? 0.0 : n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }
}

}  // namespace

int PromptsNeeded(const SpeculativeBenchOptions& options) {
  int most = 0;
  for (int batch : options.batch_sizes) {
    if (batch >= 1) most = std::max(most, Rounds(options, batch) * batch);
  }
  return most;
}

absl::StatusOr<std::vector<SpeculativeBenchRow>> RunSpeculativeBench(Backend* backend,
                                                                     const SpeculativeBenchOptions& options) {
  std::vector<SpeculativeBenchRow> rows;
  if (options.runs < 1) return absl::InvalidArgumentError("runs " + std::to_string(options.runs) + ": at least 1");
  for (int batch : options.batch_sizes) {
    if (batch < 1) return absl::InvalidArgumentError("batch size " + std::to_string(batch) + ": at least 1");
    const int needed = Rounds(options, batch) * batch;
    if (needed > static_cast<int>(options.prompts.size())) {
      return absl::InvalidArgumentError("batch size " + std::to_string(batch) + " needs " + std::to_string(needed) +
                                        " prompts; have " + std::to_string(options.prompts.size()));
    }
    ASSIGN_OR_RETURN(StateCache cache, StateCache::Create(backend, batch));
    ASSIGN_OR_RETURN(const StepCosts costs, WarmUpBatch(backend, options, batch));
    constexpr std::pair<SpeculationMode, const char*> kModes[] = {
        {SpeculationMode::kOff, "off"}, {SpeculationMode::kOn, "on"}, {SpeculationMode::kAuto, "auto"}};
    const size_t first = rows.size();
    // The modes take turns run by run, so that a drift of the machine's speed reaches each alike.
    for (int run = 0; run < options.runs; ++run) {
      for (size_t m = 0; m < std::size(kModes); ++m) {
        const auto [mode, name] = kModes[m];
        std::fprintf(stderr, "bench: batch %d, speculation %s, run %d of %d ...\n", batch, name, run + 1,
                     options.runs);
        ASSIGN_OR_RETURN(const SpeculativeBenchRow one, RunOne(backend, options, batch, mode, name, costs, cache));
        if (run == 0) {
          rows.push_back(one);
        } else {
          Pool(one, &rows[first + m]);
        }
      }
    }
    SetRunSpeedups(std::span<SpeculativeBenchRow>(rows).subspan(first));
  }
  return rows;
}

std::vector<std::vector<int32_t>> RandomPrompts(int count, int length, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(3, vocab - 1);
  std::vector<std::vector<int32_t>> prompts(count, std::vector<int32_t>(length));
  for (auto& prompt : prompts) {
    for (int32_t& t : prompt) t = id(rng);
  }
  return prompts;
}

AcceptanceTrace RecordedAcceptance(const std::vector<SpeculativeBenchRow>& rows, const std::string& model,
                                   int num_draft) {
  AcceptanceTrace trace;
  trace.model = model;
  trace.num_draft = num_draft;
  for (const auto& r : rows) {
    if (r.mode == "on") trace.counts.Add(r.acceptance);
  }
  return trace;
}

std::string FormatSpeculativeTable(const std::vector<SpeculativeBenchRow>& rows) {
  std::map<int, double> plain_rate;
  for (const auto& r : rows) {
    if (r.mode == "off") plain_rate[r.batch] = r.tokens_per_second();
  }
  std::string out;
  char line[256];
  std::snprintf(line, sizeof(line), "%6s %4s %5s %5s %8s %8s %9s %11s %9s %10s %8s %8s %10s %10s %7s\n", "batch",
                "runs", "seqs", "mode", "tokens", "passes", "drafting", "tok/step", "accept", "tok/s", "speedup",
                "median", "ms/draft", "ms/plain", "graphs");
  out += line;
  auto mean_ms = [](double seconds, int64_t n) { return n ? 1e3 * seconds / n : 0.0; };
  for (const auto& r : rows) {
    const double accept = r.drafted ? double(r.accepted) / r.drafted : 0;
    const double base = plain_rate[r.batch];
    const std::string graphs = r.graph_builds < 0 ? "-" : std::to_string(r.graph_builds);
    std::snprintf(line, sizeof(line),
                  "%6d %4d %5d %5s %8lld %8lld %9lld %11.3f %9.3f %10.1f %7.2fx %7.2fx %10.3f %10.3f %7s\n", r.batch, r.runs,
                  r.sequences, r.mode.c_str(), static_cast<long long>(r.tokens), static_cast<long long>(r.passes),
                  static_cast<long long>(r.drafting_passes), r.tokens_per_step(), accept, r.tokens_per_second(),
                  base > 0 ? r.tokens_per_second() / base : 0.0, r.median_speedup,
                  mean_ms(r.drafting_seconds, r.drafting_passes), mean_ms(r.plain_seconds, r.plain_passes()),
                  graphs.c_str());
    out += line;
  }
  out += "graphs: steps inside the timed passes that ran eagerly or were captured instead of replaying a graph "
         "(warm-up's work; - where the backend does not count them)\n";
  return out;
}

nlohmann::json SpeculativeRowsToJson(const std::vector<SpeculativeBenchRow>& rows) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : rows) {
    j.push_back({{"batch", r.batch},
                 {"runs", r.runs},
                 {"sequences", r.sequences},
                 {"mode", r.mode},
                 {"tokens", r.tokens},
                 {"sequence_steps", r.sequence_steps},
                 {"passes", r.passes},
                 {"drafted", r.drafted},
                 {"accepted", r.accepted},
                 {"tokens_per_step", r.tokens_per_step()},
                 {"decode_seconds", r.decode_seconds},
                 {"drafting_passes", r.drafting_passes},
                 {"drafting_seconds", r.drafting_seconds},
                 {"plain_seconds", r.plain_seconds},
                 {"tokens_per_second", r.tokens_per_second()},
                 {"run_tokens_per_second", r.run_tokens_per_second},
                 {"run_speedups", r.run_speedups},
                 {"median_speedup", r.median_speedup},
                 {"graph_builds", r.graph_builds < 0 ? nlohmann::json() : nlohmann::json(r.graph_builds)}});
  }
  return j;
}

}  // namespace xlserve::bench
