#include "bench/shape_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <span>
#include <thread>

#include "bench/interleaved_timing.h"
#include "engine/model/checkpoint_layout.h"
#include "engine/util/dtype.h"
#include "engine/warm_up.h"
#include "base/status_macros.h"

namespace xlserve::bench {
namespace {

constexpr int kPrefillRuns = 5;  // timed prefills per prompt length, after one untimed
constexpr int kVerifyRounds = 5;  // blocks of plain and verify steps, taking turns

// DESIGN §8: NX-AI's xlstm_large + mlstm_kernels (Triton), bf16 state, CUDA graphs, same H100.
double ReferenceStepMs(int batch) {
  switch (batch) {
    case 1: return 8.00;
    case 8: return 9.80;
    case 32: return 12.51;
    case 64: return 15.64;
    case 128: return 21.98;
    default: return 0;
  }
}

// The figure at `key`, or 0.
double Lookup(const std::map<int, double>& figures, int key) {
  const auto it = figures.find(key);
  return it == figures.end() ? 0 : it->second;
}

// Two table cells: the other implementation's ms and how many times faster this one is ("-"
// where there is no figure).
std::string Versus(double other_ms, double ms) {
  char cell[64];
  if (other_ms > 0) {
    std::snprintf(cell, sizeof(cell), "%12.2f %7.2fx", other_ms, other_ms / ms);
  } else {
    std::snprintf(cell, sizeof(cell), "%12s %8s", "-", "-");
  }
  return cell;
}

struct HostTensors {
  std::vector<std::vector<uint16_t>> buffers;
};

double SecondsSince(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

// Parameters a forward pass multiplies by (every matrix but the embedding table, which is
// gathered, not multiplied).
double MatrixParams(const ModelConfig& cfg) {
  double params = 0;
  for (const ExpectedTensor& e : ExpectedCheckpointTensors(cfg)) {
    if (e.shape.size() != 2 || e.name == "backbone.embeddings.weight") continue;
    params += double(e.shape[0]) * e.shape[1];
  }
  return params;
}

// Device bytes of one state slot: C and n per head in the state's type, m in fp32.
double StateBytes(const ModelConfig& cfg, DType state) {
  const double heads = double(cfg.num_blocks) * cfg.num_heads;
  const double cn = double(cfg.qk_head_dim()) * cfg.v_head_dim() + cfg.qk_head_dim();
  return heads * (cn * DTypeSize(state) + 4);
}

struct StepTiming {
  double step_ms = 0;
  double eager_ms = 0;  // decode: the same step with its kernels launched one by one (no graph)
  std::string top_stage;
  double top_share = 0;
  nlohmann::json stages = nlohmann::json::object();
};

// The stages of one call of `step` with events between them, into `t` (the largest with its share).
absl::Status ProfileOnce(const Accelerator& device, Backend* backend, const std::function<absl::Status()>& step,
                         StepTiming* t) {
  RETURN_IF_ERROR(device.SetStageProfiling(backend, true));
  RETURN_IF_ERROR(step());
  RETURN_IF_ERROR(device.SetStageProfiling(backend, false));
  ASSIGN_OR_RETURN(auto stages, device.TakeStageProfile(backend));
  double total = 0;
  for (const auto& [name, ms] : stages) {
    total += ms;
    t->stages[name] = ms;
  }
  if (!stages.empty() && total > 0) {
    t->top_stage = stages[0].first;
    t->top_share = stages[0].second / total;
  }
  return absl::OkStatus();
}

// Wall milliseconds per call of `step` after `warmups` untimed calls.
absl::StatusOr<double> MsPerCall(const std::function<absl::Status()>& step, int warmups, int steps) {
  for (int w = 0; w < warmups; ++w) RETURN_IF_ERROR(step());
  const auto start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) RETURN_IF_ERROR(step());
  return SecondsSince(start) / steps * 1e3;
}

// MsPerCall, and the stages of one more call.
absl::StatusOr<StepTiming> TimeStep(const Accelerator& device, Backend* backend,
                                    const std::function<absl::Status()>& step, int warmups, int steps) {
  StepTiming t;
  ASSIGN_OR_RETURN(t.step_ms, MsPerCall(step, warmups, steps));
  RETURN_IF_ERROR(ProfileOnce(device, backend, step, &t));
  return t;
}

// One greedy decode step of `batch` sequences (the tokens come back, not the logits).
absl::StatusOr<StepTiming> MeasureDecode(const Accelerator& device, Backend* backend, int batch, int steps) {
  RETURN_IF_ERROR(backend->AllocateSlots(batch));
  std::vector<int32_t> tokens(batch);
  std::vector<SequenceInput> seqs(batch);
  ForwardOutput out;
  for (int i = 0; i < batch; ++i) {
    tokens[i] = 3 + i;
    seqs[i] = SequenceInput{i, std::span<const int32_t>(&tokens[i], 1), false};
    seqs[i].tokens_only = true;
  }
  const auto step = [&] { return backend->Forward(seqs, &out); };
  ASSIGN_OR_RETURN(StepTiming t, TimeStep(device, backend, step, 3, steps));
  // One sequence asking for its one row's logits takes the step off the graph path (CUDA backend)
  // with the same kernels: what replaying a graph saves, which mixed passes, run eagerly, lack.
  seqs[0].all_logits = true;
  ASSIGN_OR_RETURN(t.eager_ms, MsPerCall(step, 3, steps));
  return t;
}

// A serving step that admits prompts while others decode: `batch - prompts` greedy decode rows
// and the first chunks, of `chunk` tokens, of `prompts` new prompts, in one pass (the tokens come
// back, not the logits). The prompts' slots are reset before each step, as the server's slot
// acquisition does.
absl::StatusOr<StepTiming> MeasureMixed(const Accelerator& device, Backend* backend, int batch, int prompts, int chunk,
                                        int steps) {
  RETURN_IF_ERROR(backend->AllocateSlots(batch));
  const int decode = batch - prompts;
  std::vector<int32_t> tokens(decode + size_t(prompts) * chunk);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = 3 + int(i);
  std::vector<SequenceInput> seqs(batch);
  for (int i = 0; i < batch; ++i) {
    const bool prompt = i >= decode;
    const size_t at = prompt ? decode + size_t(i - decode) * chunk : i;
    seqs[i] = SequenceInput{i, std::span<const int32_t>(&tokens[at], prompt ? chunk : 1), false};
    seqs[i].tokens_only = true;
  }
  ForwardOutput out;
  return TimeStep(
      device, backend,
      [&]() -> absl::Status {
        for (int i = decode; i < batch; ++i) RETURN_IF_ERROR(backend->ResetSlot(i));
        return backend->Forward(seqs, &out);
      },
      3, steps);
}

// Speculative steps of each of `lengths` tokens for `batch` sequences (slots [0, batch)): a
// deferred greedy verify pass with every row's argmax, then the commit of every token; timed
// interleaved with a plain greedy step of `batch` other sequences (slots [batch, 2 batch)), which
// no pending commit touches. `stages` gets one profiled verify of each length.
absl::StatusOr<InterleavedTiming> MeasureVerify(const Accelerator& device, Backend* backend, int batch,
                                                std::span<const int> lengths, int steps,
                                                std::vector<StepTiming>* stages) {
  RETURN_IF_ERROR(backend->AllocateSlots(2 * batch));
  const int max_len = *std::max_element(lengths.begin(), lengths.end());
  std::vector<int32_t> tokens(size_t(batch) * max_len);
  std::vector<SequenceInput> plain(batch);
  for (int i = 0; i < batch; ++i) {
    for (int t = 0; t < max_len; ++t) tokens[size_t(i) * max_len + t] = 3 + i + t;
    plain[i] = SequenceInput{batch + i, std::span<const int32_t>(&tokens[size_t(i) * max_len], 1), false};
    plain[i].tokens_only = true;
  }
  std::vector<std::vector<SequenceInput>> verifies(lengths.size(), std::vector<SequenceInput>(batch));
  std::vector<std::vector<CommitInput>> commits(lengths.size(), std::vector<CommitInput>(batch));
  for (size_t k = 0; k < lengths.size(); ++k) {
    for (int i = 0; i < batch; ++i) {
      const std::span<const int32_t> run(&tokens[size_t(i) * max_len], lengths[k]);
      verifies[k][i] = SequenceInput{i, run, true, false, true, true};
      commits[k][i] = CommitInput{i, lengths[k]};
    }
  }
  ForwardOutput out;
  std::vector<std::function<absl::Status()>> kinds;
  for (size_t k = 0; k < lengths.size(); ++k) {
    kinds.push_back([&, k]() -> absl::Status {
      RETURN_IF_ERROR(backend->Forward(verifies[k], &out));
      return backend->Commit(commits[k]);
    });
  }
  const auto clock = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  ASSIGN_OR_RETURN(InterleavedTiming timing,
                   TimeInterleaved([&] { return backend->Forward(plain, &out); }, kinds, 2, kVerifyRounds, steps,
                                   clock));
  stages->assign(lengths.size(), StepTiming{});
  for (size_t k = 0; k < lengths.size(); ++k) RETURN_IF_ERROR(ProfileOnce(device, backend, kinds[k], &(*stages)[k]));
  return timing;
}

}  // namespace

ModelConfig Xlstm7bConfig() {
  ModelConfig c;
  c.vocab_size = 50304;
  c.hidden_size = 4096;
  c.num_blocks = 32;
  c.num_heads = 8;
  c.qk_dim_factor = 0.5;
  c.v_dim_factor = 1.0;
  c.ffn_proj_factor = 2.667;
  c.ffn_round_up_to_multiple_of = 64;
  c.bos_token_id = 0;
  c.pad_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

std::shared_ptr<const ModelWeights> RandomBf16Weights(const ModelConfig& config, uint32_t seed) {
  auto host = std::make_shared<HostTensors>();
  const std::vector<ExpectedTensor> expected = ExpectedCheckpointTensors(config);
  host->buffers.resize(expected.size());
  std::unordered_map<std::string, TensorView> tensors;
  for (size_t t = 0; t < expected.size(); ++t) {
    int64_t n = 1;
    for (int64_t s : expected[t].shape) n *= s;
    host->buffers[t].resize(n);
  }
  // Values: U(-1, 1)/sqrt(fan_in) for matrices, 1 for norm weights, forget-gate bias 4 (long
  // memory), other biases 0; the speed does not depend on them, the maths stays finite.
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      for (size_t t = w; t < expected.size(); t += threads) {
        const ExpectedTensor& e = expected[t];
        std::vector<uint16_t>& buf = host->buffers[t];
        const bool matrix = e.shape.size() == 2;
        const bool norm = !matrix && e.name.find("norm") != std::string::npos;
        const bool forget = e.name.find("fgate_preact.bias") != std::string::npos;
        const float scale = matrix ? 1.0f / std::sqrt(static_cast<float>(e.shape[1])) : 0.0f;
        uint64_t x = (uint64_t(seed) << 32) ^ (t * 0x9E3779B97F4A7C15ull) ^ 0x2545F4914F6CDD1Dull;
        for (size_t i = 0; i < buf.size(); ++i) {
          float v = norm ? 1.0f : (forget ? 4.0f : 0.0f);
          if (matrix) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v = (static_cast<float>(x >> 40) / static_cast<float>(1ull << 24) * 2.0f - 1.0f) * scale;
          }
          buf[i] = FloatToBF16(v);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  for (size_t t = 0; t < expected.size(); ++t) {
    TensorView view;
    view.dtype = DType::kBF16;
    view.shape = expected[t].shape;
    view.data = host->buffers[t].data();
    tensors[expected[t].name] = view;
  }
  return AssembleModelWeights(config, tensors, host);
}

namespace {

// The GEMM choices that timing made on `backend` as one JSON row: a choice that differs between
// two runs of one binary explains a row that does.
absl::Status AppendGemmChoices(const Accelerator& device, Backend* backend, const std::string& prec, DType state,
                               nlohmann::json* rows) {
  ASSIGN_OR_RETURN(const std::vector<GemmChoice> choices, device.GemmChoices(backend));
  nlohmann::json shapes = nlohmann::json::array();
  for (const GemmChoice& c : choices) {
    nlohmann::json candidates = nlohmann::json::array();
    for (const auto& [name, ms] : c.candidates_ms) candidates.push_back({{"name", name}, {"ms", ms}});
    nlohmann::json passes = nlohmann::json::array();
    for (const auto& [name, ms] : c.pass_ms) passes.push_back({{"name", name}, {"ms", ms}});
    shapes.push_back({{"n", c.n},
                      {"k", c.k},
                      {"rows", c.rows},
                      {"swiglu", c.swiglu},
                      {"chosen", c.chosen},
                      {"candidates", candidates},
                      {"passes", passes}});
  }
  rows->push_back({{"kind", "gemm_choices"},
                   {"precision", prec},
                   {"state_dtype", state == DType::kF32 ? "f32" : "bf16"},
                   {"shapes", shapes}});
  return absl::OkStatus();
}

// ShapeBenchOptions::warm_up, with its progress lines on stderr.
absl::Status WarmUpAsServer(Backend* backend, const ShapeBenchOptions& options) {
  const int max_batch = *std::max_element(options.batch_sizes.begin(), options.batch_sizes.end());
  RETURN_IF_ERROR(backend->AllocateSlots(max_batch));
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(WarmUp(backend, WarmUpOptions{max_batch, std::max(max_batch, options.warm_up_step_tokens), 0},
                         [](const std::string& line) { std::fprintf(stderr, "bench: %s\n", line.c_str()); }));
  std::fprintf(stderr, "bench: warm-up done in %.1f s\n", SecondsSince(start));
  return absl::OkStatus();
}

// The tables of one precision, appended to `rows` and `table`.
absl::Status RunPrecision(const Accelerator& device, std::shared_ptr<const ModelWeights> weights,
                          const ShapeBenchOptions& options, Precision precision, nlohmann::json* rows,
                          std::string* table) {
  const ModelConfig& cfg = weights->config;
  const double matrix_bytes = 2 * MatrixParams(cfg);  // bf16
  const std::string prec(PrecisionName(precision));
  char line[512];
  std::map<int, double> plain_step_ms;  // first state dtype, by batch
  for (DType state : options.state_dtypes) {
    ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, device.CreateBackend(weights, state, precision));
    if (options.warm_up) RETURN_IF_ERROR(WarmUpAsServer(backend.get(), options));
    const double state_bytes = StateBytes(cfg, state);
    std::snprintf(line, sizeof(line),
                  "\ndecode, precision %s, %s state (%.1f MB per sequence): Forward() per greedy step, tokens (argmax "
                  "on the GPU) to the host included; eager: the same step without replaying a graph\n",
                  prec.c_str(), state == DType::kF32 ? "fp32" : "bf16", state_bytes / 1e6);
    *table += line;
    // Beside the same session's peer where given (its state is bf16), else DESIGN §8's reference.
    const bool peer = options.peer.has_value();
    std::snprintf(line, sizeof(line), "%6s %9s %9s %9s %9s %9s %12s %8s   %s\n", "batch", "step ms", "eager ms",
                  "tok/s", "floor ms", "of floor", peer ? "peer ms" : "ref step ms", peer ? "vs peer" : "vs ref",
                  "largest stage of a step (share)");
    *table += line;
    for (int batch : options.batch_sizes) {
      ASSIGN_OR_RETURN(StepTiming r, MeasureDecode(device, backend.get(), batch, options.steps));
      if (state == options.state_dtypes.front()) plain_step_ms[batch] = r.step_ms;
      const double floor_ms = (matrix_bytes + 2 * state_bytes * batch) / options.copy_bandwidth * 1e3;
      const double ref = ReferenceStepMs(batch);
      const double other = peer ? (state == DType::kBF16 ? Lookup(options.peer->step_ms, batch) : 0) : ref;
      std::snprintf(line, sizeof(line), "%6d %9.2f %9.2f %9.0f %9.2f %8.0f%% %s   %s (%.0f%%)\n", batch, r.step_ms,
                    r.eager_ms, batch / r.step_ms * 1e3, floor_ms, 100 * floor_ms / r.step_ms,
                    Versus(other, r.step_ms).c_str(), r.top_stage.c_str(), 100 * r.top_share);
      *table += line;
      nlohmann::json row = {{"kind", "decode"},
                            {"precision", prec},
                            {"state_dtype", state == DType::kF32 ? "f32" : "bf16"},
                            {"batch", batch},
                            {"step_ms", r.step_ms},
                            {"eager_step_ms", r.eager_ms},
                            {"tokens_per_s", batch / r.step_ms * 1e3},
                            {"floor_ms", floor_ms},
                            {"fraction_of_floor", floor_ms / r.step_ms},
                            {"reference_step_ms", ref},
                            {"stage_ms", r.stages}};
      if (peer && other > 0) row["peer_step_ms"] = other;
      rows->push_back(std::move(row));
    }
    if (state != options.state_dtypes.front()) {
      RETURN_IF_ERROR(AppendGemmChoices(device, backend.get(), prec, state, rows));
      continue;
    }
    if (!options.verify_lengths.empty()) {
      std::snprintf(line, sizeof(line),
                    "\nspeculative verify, precision %s, %s state: deferred greedy pass of L tokens per sequence "
                    "(argmax of all L rows to the host) + commit, vs a plain step; %d rounds of plain and verify "
                    "blocks taking turns: median ms, median ratio and its range over rounds\n%6s %9s",
                    prec.c_str(), state == DType::kF32 ? "fp32" : "bf16", kVerifyRounds, "batch", "plain ms");
      *table += line;
      for (int len : options.verify_lengths) {
        std::snprintf(line, sizeof(line), " %26s", ("L=" + std::to_string(len) + " ms (ratio, range)").c_str());
        *table += line;
      }
      *table += "\n";
      for (int batch : options.batch_sizes) {
        std::vector<StepTiming> stages;
        ASSIGN_OR_RETURN(const InterleavedTiming v,
                         MeasureVerify(device, backend.get(), batch, options.verify_lengths,
                                       std::max(2, options.steps / 4), &stages));
        std::snprintf(line, sizeof(line), "%6d %9.2f", batch, v.base_ms);
        *table += line;
        for (size_t k = 0; k < options.verify_lengths.size(); ++k) {
          std::snprintf(line, sizeof(line), " %7.2f (%4.2fx, %4.2f-%4.2f)", v.ms[k], v.ratio[k], v.ratio_min[k],
                        v.ratio_max[k]);
          *table += line;
          rows->push_back({{"kind", "verify"},
                           {"precision", prec},
                           {"state_dtype", state == DType::kF32 ? "f32" : "bf16"},
                           {"batch", batch},
                           {"tokens_per_sequence", options.verify_lengths[k]},
                           {"verify_commit_ms", v.ms[k]},
                           {"plain_step_ms", v.base_ms},
                           {"cost_ratio", v.ratio[k]},
                           {"cost_ratio_min", v.ratio_min[k]},
                           {"cost_ratio_max", v.ratio_max[k]},
                           {"rounds", kVerifyRounds},
                           {"stage_ms", stages[k].stages}});
        }
        *table += "\n";
      }
    }
    std::snprintf(line, sizeof(line),
                  "\nmixed serving steps, precision %s, %s state: new prompts (count x tokens) beside decode rows, batch "
                  "rows in all, in one pass, vs a plain step\n%6s %9s %20s %20s %20s   %s\n",
                  prec.c_str(), state == DType::kF32 ? "fp32" : "bf16", "batch", "plain ms", "1 x 64 ms (ratio)",
                  "1 x 128 ms (ratio)", "2 x 128 ms (ratio)", "largest stages of the 1 x 128 step");
    *table += line;
    for (int batch : options.batch_sizes) {
      if (batch < 2) continue;
      const double plain = plain_step_ms[batch];
      std::string cells;
      std::string top;
      for (auto [prompts, chunk] : {std::pair{1, 64}, std::pair{1, 128}, std::pair{2, 128}}) {
        if (prompts >= batch) {
          std::snprintf(line, sizeof(line), " %20s", "-");
          cells += line;
          continue;
        }
        ASSIGN_OR_RETURN(const StepTiming m,
                         MeasureMixed(device, backend.get(), batch, prompts, chunk, std::max(3, options.steps / 2)));
        std::snprintf(line, sizeof(line), " %11.2f (%5.2fx)", m.step_ms, m.step_ms / plain);
        cells += line;
        if (prompts == 1 && chunk == 128) {
          std::vector<std::pair<double, std::string>> stages;
          for (const auto& [name, ms] : m.stages.items()) stages.push_back({ms.get<double>(), name});
          std::sort(stages.rbegin(), stages.rend());
          for (size_t i = 0; i < std::min<size_t>(3, stages.size()); ++i) {
            std::snprintf(line, sizeof(line), "%s%s %.2f ms", i ? ", " : "", stages[i].second.c_str(), stages[i].first);
            top += line;
          }
        }
        rows->push_back({{"kind", "mixed"},
                         {"precision", prec},
                         {"state_dtype", state == DType::kF32 ? "f32" : "bf16"},
                         {"batch", batch},
                         {"prompts", prompts},
                         {"chunk", chunk},
                         {"step_ms", m.step_ms},
                         {"plain_step_ms", plain},
                         {"cost_ratio", m.step_ms / plain},
                         {"stage_ms", m.stages}});
      }
      std::snprintf(line, sizeof(line), "%6d %9.2f%s   %s\n", batch, plain, cells.c_str(), top.c_str());
      *table += line;
    }
    std::snprintf(line, sizeof(line),
                  "\nprefill, batch 1, precision %s, %s state: time to first token vs the tensor-core roofline "
                  "(%.0f TFLOP/s measured)\n",
                  prec.c_str(), state == DType::kF32 ? "fp32" : "bf16", options.tensor_core_flops / 1e12);
    *table += line;
    std::snprintf(line, sizeof(line), "%8s %10s %12s %12s %16s%s\n", "prompt", "TTFT ms", "roofline ms",
                  "TFLOP/s", "of roofline", options.peer ? "      peer ms  vs peer" : "");
    *table += line;
    RETURN_IF_ERROR(backend->AllocateSlots(1));
    for (int len : options.prompt_lengths) {
      std::vector<int32_t> prompt(len);
      for (int i = 0; i < len; ++i) prompt[i] = 3 + (i * 7919) % (cfg.vocab_size - 3);
      SequenceInput s{0, prompt, false};
      ForwardOutput out;
      RETURN_IF_ERROR(backend->ResetSlot(0));
      RETURN_IF_ERROR(backend->Forward(std::span<const SequenceInput>(&s, 1), &out));
      // The median of kPrefillRuns: one run of a 128-token prompt moved by ±0.1 ms between calls.
      std::vector<double> runs;
      for (int r = 0; r < kPrefillRuns; ++r) {
        RETURN_IF_ERROR(backend->ResetSlot(0));
        const auto start = std::chrono::steady_clock::now();
        RETURN_IF_ERROR(backend->Forward(std::span<const SequenceInput>(&s, 1), &out));
        runs.push_back(SecondsSince(start) * 1e3);
      }
      std::nth_element(runs.begin(), runs.begin() + kPrefillRuns / 2, runs.end());
      const double ms = runs[kPrefillRuns / 2];
      RETURN_IF_ERROR(device.SetStageProfiling(backend.get(), true));
      RETURN_IF_ERROR(backend->ResetSlot(0));
      RETURN_IF_ERROR(backend->Forward(std::span<const SequenceInput>(&s, 1), &out));
      RETURN_IF_ERROR(device.SetStageProfiling(backend.get(), false));
      ASSIGN_OR_RETURN(auto stages, device.TakeStageProfile(backend.get()));
      nlohmann::json stage_ms = nlohmann::json::object();
      for (const auto& [name, t] : stages) stage_ms[name] = t;
      // lm_head runs on the last row only.
      const double flops = 2.0 * (MatrixParams(cfg) - double(cfg.vocab_size) * cfg.hidden_size) * len +
                           2.0 * cfg.vocab_size * cfg.hidden_size;
      const double roof_ms = flops / options.tensor_core_flops * 1e3;
      const double peer_ms = options.peer && state == DType::kBF16 ? Lookup(options.peer->ttft_ms, len) : 0;
      std::snprintf(line, sizeof(line), "%8d %10.1f %12.1f %12.1f %15.1f%%%s   largest stage: %s (%.0f%%)\n", len, ms,
                    roof_ms, flops / (ms / 1e3) / 1e12, 100 * roof_ms / ms,
                    options.peer ? (" " + Versus(peer_ms, ms)).c_str() : "",
                    stages.empty() ? "" : stages[0].first.c_str(), stages.empty() ? 0.0 : 100 * stages[0].second / ms);
      *table += line;
      nlohmann::json row = {{"kind", "prefill"},
                            {"precision", prec},
                            {"state_dtype", state == DType::kF32 ? "f32" : "bf16"},
                            {"prompt_tokens", len},
                            {"ttft_ms", ms},
                            {"roofline_ms", roof_ms},
                            {"tflops", flops / (ms / 1e3) / 1e12},
                            {"fraction_of_roofline", roof_ms / ms},
                            {"stage_ms", stage_ms}};
      if (peer_ms > 0) row["peer_ttft_ms"] = peer_ms;
      rows->push_back(std::move(row));
    }
    RETURN_IF_ERROR(AppendGemmChoices(device, backend.get(), prec, state, rows));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<nlohmann::json> RunShapeBench(const Accelerator& device, std::shared_ptr<const ModelWeights> weights,
                                             const ShapeBenchOptions& options, std::string* table) {
  nlohmann::json rows = nlohmann::json::array();
  for (Precision precision : options.precisions) {
    RETURN_IF_ERROR(RunPrecision(device, weights, options, precision, &rows, table));
  }
  return rows;
}

}  // namespace xlserve::bench
