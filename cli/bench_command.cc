// `xlserve bench --speculative`: self-speculative decoding measured on a model and real text.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cli/commands.h"
#include "cli/flags.h"
#include "engine/device.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"
#include "engine/speculative/acceptance_trace.h"
#include "engine/tokenizer/tokenizer.h"
#include "base/status_macros.h"
#include "runtime/accelerators.h"
#include "runtime/backend_factory.h"
#include "bench/peer_figures.h"
#include "bench/shape_bench.h"
#include "bench/speculative_bench.h"
#include "bench/tokenizer_bench.h"

namespace xlserve::cli {
namespace {

struct BenchSettings {
  bool speculative = false;
  std::string shape;
  std::string model = "models/xlstm-code-mtp";
  std::string prompts_from;
  int prompt_tokens = 128;
  int new_tokens = 128;
  int sequences = 8;
  int runs = 1;
  std::optional<std::vector<int>> batch_sizes;
  std::string precisions = "bf16,exact";
  std::string state_dtypes = "bf16,f32";
  int num_draft = 3;
  Device device = Device::kAuto;
  int threads = 0;
  int tensor_parallel = 1;
  std::vector<std::string> tokenizer;
  std::string text_file;
  int repeats = 5;
  std::string json;
  std::string record_acceptance;
  std::string acceptance;
  bool warm_up = false;
  std::string peer;
};

// Settings that `serve` and `generate` have too are spelt as there.
const settings::SettingsTable<BenchSettings>& BenchSettingsTable() {
  using B = BenchSettings;
  static const settings::SettingsTable<BenchSettings> table = {
      {"speculative", &B::speculative, "measure self-speculative decoding"},
      {"shape", &B::shape,
       "measure a model shape with random weights: 7b (CUDA backend), or with --acceptance 7b or model (the "
       "--model directory's config)"},
      {"model", &B::model, "model directory with MTP heads and tokenizer.json"},
      {"prompts_from", &B::prompts_from, "directory of .py files the model never saw"},
      {"prompt_tokens", &B::prompt_tokens, "tokens per prompt", {1, 1 << 20}},
      {"new_tokens", &B::new_tokens, "tokens generated per sequence", {1, 1 << 20}},
      {"batch_sizes", &B::batch_sizes, "batch sizes (default 1,8,32)", {1, 1 << 16}},
      {"sequences", &B::sequences,
       "with --speculative: sequences decoded at each batch size at least, in rounds of the batch (acceptance "
       "varies from text to text)", {1, 1 << 16}},
      {"runs", &B::runs,
       "with --speculative: runs of each mode at each batch size, the modes taking turns (off, on, auto, off, "
       "...); each row pools its mode's runs, the median column is the median over turns of a run's tok/s over "
       "off's, and the JSON keeps each run's tok/s", {1, 100}},
      {"num_draft", &B::num_draft, "drafts per step at most", {0, 16}},
      {"device", &B::device, kDeviceNames, "backend (auto: cuda when a GPU is present)"},
      {"threads", &B::threads, "CPU backend threads (0: one per core)", {0, 4096}},
      {"tensor_parallel", &B::tensor_parallel,
       "ranks of a tensor-parallel split by heads, FFN and vocabulary (docs/design.md §10); the CPU backend "
       "runs them as threads with the bits of one rank; CUDA runs one rank", {1, 8}},
      {"precisions", &B::precisions, "with --shape: the precisions to measure, each in turn (bf16, exact)"},
      {"state_dtypes", &B::state_dtypes,
       "with --shape: state dtypes of the decode tables (bf16, f32); the other tables take the first"},
      {"tokenizer", &B::tokenizer, "measure tokenization with these tokenizer.json files (repeat or comma-separate)"},
      {"text_file", &B::text_file, "with --tokenizer: the file whose bytes are encoded"},
      {"repeats", &B::repeats, "with --tokenizer: encodings timed per tokenizer, cold and warm", {1, 1000}},
      {"json", &B::json, "also write the results to this JSON file"},
      {"record_acceptance", &B::record_acceptance,
       "with --speculative: write the acceptance of the `on` runs to this trace file (JSON)"},
      {"acceptance", &B::acceptance,
       "with --shape and --speculative: replay this trace's acceptance (system cost, not output quality)"},
      {"warm_up", &B::warm_up,
       "with --shape 7b: run a server's start-up warm-up on each backend before measuring (whole passes settle "
       "the GEMM choices timing leaves open; steps replay graphs)"},
      {"peer", &B::peer,
       "with --shape 7b: another implementation's figures from this session on this GPU (bench/nxai_peer.py "
       "--json FILE), shown beside the bf16-state decode steps and TTFTs"},
  };
  return table;
}

// Prompts: `prompt_tokens` tokens from the middle of each .py file under `dir` (sorted, so
// runs compare), skipping files too short to give a full prompt.
absl::StatusOr<std::vector<std::vector<int32_t>>> LoadPrompts(const Tokenizer& tokenizer, const std::string& dir,
                                                              int prompt_tokens, int count) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) return absl::NotFoundError("--prompts-from: " + dir + " is not a directory");
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied)) {
    if (e.is_regular_file() && e.path().extension() == ".py") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::vector<int32_t>> prompts;
  for (const fs::path& f : files) {
    if (static_cast<int>(prompts.size()) == count) break;
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    absl::StatusOr<std::vector<int>> ids = tokenizer.Encode(ss.str());
    if (!ids.ok() || static_cast<int>(ids->size()) < 2 * prompt_tokens) continue;
    const size_t start = ids->size() / 2 - prompt_tokens / 2;
    prompts.emplace_back(ids->begin() + start, ids->begin() + start + prompt_tokens);
  }
  if (static_cast<int>(prompts.size()) < count) {
    return absl::InvalidArgumentError("--prompts-from " + dir + " gave " + std::to_string(prompts.size()) +
                                      " prompts of " + std::to_string(prompt_tokens) + " tokens; need " +
                                      std::to_string(count));
  }
  return prompts;
}

absl::Status WriteJson(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) return absl::InternalError("cannot write " + path);
  return absl::OkStatus();
}

absl::Status RunSpeculative(const BenchSettings& f) {
  if (f.prompts_from.empty()) {
    return absl::InvalidArgumentError("--prompts-from DIR is required (a directory of held-out .py files)");
  }
  absl::StatusOr<std::shared_ptr<const ModelWeights>> weights = LoadModelWeights(f.model);
  if (!weights.ok()) return weights.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromFile((std::filesystem::path(f.model) / "tokenizer.json").string());
  if (!tokenizer.ok()) return tokenizer.status();
  bench::SpeculativeBenchOptions options;
  if (f.batch_sizes) options.batch_sizes = *f.batch_sizes;
  options.new_tokens = f.new_tokens;
  options.num_draft = f.num_draft;
  options.sequences = f.sequences;
  options.runs = f.runs;
  absl::StatusOr<std::vector<std::vector<int32_t>>> prompts =
      LoadPrompts(**tokenizer, f.prompts_from, f.prompt_tokens, bench::PromptsNeeded(options));
  if (!prompts.ok()) return prompts.status();
  options.prompts = std::move(*prompts);

  BackendOptions backend_options;
  backend_options.device = f.device;
  backend_options.num_threads = f.threads;
  backend_options.tensor_parallel = f.tensor_parallel;
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(*weights, backend_options);
  if (!backend.ok()) return backend.status();
  options.graph_builds = runtime::GraphBuildCounter(backend->get());
  absl::StatusOr<std::vector<bench::SpeculativeBenchRow>> rows = bench::RunSpeculativeBench(backend->get(), options);
  if (!rows.ok()) return rows.status();
  const std::string_view device = (*backend)->name();
  std::printf("self-speculative decoding, model %s, device %.*s, %d-token prompts from %s, %d new tokens, k <= %d\n",
              f.model.c_str(), int(device.size()), device.data(), f.prompt_tokens, f.prompts_from.c_str(), f.new_tokens,
              f.num_draft);
  std::fputs(bench::FormatSpeculativeTable(*rows).c_str(), stdout);
  if (!f.record_acceptance.empty()) {
    // The `on` runs drafted min(--num-draft, heads) at every step but the last few.
    const int drafted = std::min(f.num_draft, (*backend)->num_mtp_heads());
    if (drafted < 1) return absl::InvalidArgumentError("--record-acceptance: nothing was drafted (no MTP heads, or --num-draft 0)");
    RETURN_IF_ERROR(
        WriteAcceptanceTrace(f.record_acceptance, bench::RecordedAcceptance(*rows, f.model, drafted)));
    std::fprintf(stderr, "bench: acceptance of the `on` runs written to %s\n", f.record_acceptance.c_str());
  }
  if (f.json.empty()) return absl::OkStatus();
  return WriteJson(f.json, {{"model", f.model}, {"device", device}, {"prompt_tokens", f.prompt_tokens},
                            {"new_tokens", f.new_tokens}, {"num_draft", f.num_draft},
                            {"rows", bench::SpeculativeRowsToJson(*rows)}});
}

// The CUDA accelerator with a GPU: the 7B shape is far too large for the CPU backend.
absl::StatusOr<const Accelerator*> CudaFor7b() {
  const Accelerator* cuda = runtime::FindAccelerator("cuda");
  if (cuda == nullptr) {
    return absl::UnavailableError("--shape 7b measures the CUDA backend: this xlserve was built without it "
                                  "(--config=cuda)");
  }
  if (cuda->DeviceCount() == 0) return absl::UnavailableError("--shape 7b measures the CUDA backend: no GPU here");
  return cuda;
}

// The model of `bench --shape S --acceptance`: S's config with the MTP heads of --model's
// (their type, number and depth below the last block), random bf16 weights.
absl::StatusOr<ModelConfig> ReplayedShapeConfig(const BenchSettings& f) {
  ASSIGN_OR_RETURN(ModelConfig heads_from,
                   LoadModelConfig((std::filesystem::path(f.model) / "config.json").string()));
  if (!heads_from.mtp || heads_from.mtp->num_heads < 2) {
    return absl::InvalidArgumentError("--model " + f.model + " has no MTP heads to copy the layout of");
  }
  if (f.shape == "model") return heads_from;
  if (f.shape != "7b") return absl::InvalidArgumentError("--shape: 7b or model, got '" + f.shape + "'");
  if (f.device == Device::kCpu) return absl::InvalidArgumentError("--shape 7b runs on the CUDA backend, not --device cpu");
  RETURN_IF_ERROR(CudaFor7b().status());
  ModelConfig config = bench::Xlstm7bConfig();
  MtpConfig mtp = *heads_from.mtp;
  mtp.trunk_layers = config.num_blocks - (heads_from.num_blocks - heads_from.mtp->trunk_layers);
  config.mtp = mtp;
  RETURN_IF_ERROR(ValidateModelConfig(config));
  return config;
}

// Speculation on a shape whose random heads cannot draft: acceptance replayed from a trace
// recorded on a trained model, through the real decoder, Forward and Commit path.
absl::Status RunReplayedShape(const BenchSettings& f) {
  ASSIGN_OR_RETURN(AcceptanceTrace trace, ReadAcceptanceTrace(f.acceptance));
  ASSIGN_OR_RETURN(const ModelConfig config, ReplayedShapeConfig(f));
  const int heads = config.mtp->num_heads - 1;
  if (f.num_draft < 1 || f.num_draft > std::min(heads, trace.num_draft)) {
    return absl::InvalidArgumentError("--num-draft " + std::to_string(f.num_draft) + ": the model has " +
                                      std::to_string(heads) + " draft heads and the trace covers k <= " +
                                      std::to_string(trace.num_draft));
  }
  bench::SpeculativeBenchOptions options;
  if (f.batch_sizes) options.batch_sizes = *f.batch_sizes;
  options.new_tokens = f.new_tokens;
  options.num_draft = f.num_draft;
  options.sequences = f.sequences;
  options.runs = f.runs;
  options.prompts = bench::RandomPrompts(bench::PromptsNeeded(options), f.prompt_tokens, config.vocab_size, 1);
  options.replayed_acceptance = std::move(trace);
  std::fprintf(stderr, "bench: making the %s shape with %d MTP heads and random bf16 weights ...\n", f.shape.c_str(),
               heads);
  BackendOptions backend_options;
  backend_options.device = f.device;
  backend_options.num_threads = f.threads;
  backend_options.tensor_parallel = f.tensor_parallel;
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                   CreateBackend(bench::RandomBf16Weights(config, 1), backend_options));
  options.graph_builds = runtime::GraphBuildCounter(backend.get());
  ASSIGN_OR_RETURN(const std::vector<bench::SpeculativeBenchRow> rows,
                   bench::RunSpeculativeBench(backend.get(), options));
  const std::string_view device = backend->name();
  std::printf("speculative decoding, shape %s with %d random MTP heads, device %.*s, %d-token random prompts, %d new "
              "tokens, k <= %d: system cost with replayed acceptance (%s), not output quality\n",
              f.shape.c_str(), heads, int(device.size()), device.data(), f.prompt_tokens, f.new_tokens, f.num_draft,
              f.acceptance.c_str());
  std::fputs(bench::FormatSpeculativeTable(rows).c_str(), stdout);
  if (f.json.empty()) return absl::OkStatus();
  return WriteJson(f.json, {{"shape", f.shape}, {"device", device}, {"acceptance_trace", f.acceptance},
                            {"measures", "system cost with replayed acceptance, not output quality"},
                            {"prompt_tokens", f.prompt_tokens}, {"new_tokens", f.new_tokens},
                            {"num_draft", f.num_draft}, {"rows", bench::SpeculativeRowsToJson(rows)}});
}

// The values that the comma-separated names of `--flag` stand for; at least one, each known.
template <typename T, size_t N>
absl::StatusOr<std::vector<T>> ParseNames(const std::string& flag, const std::string& text,
                                          const std::pair<T, std::string_view> (&known)[N]) {
  std::vector<T> out;
  std::stringstream names(text);
  for (std::string name; std::getline(names, name, ',');) {
    const auto* it = std::find_if(std::begin(known), std::end(known), [&](const auto& k) { return k.second == name; });
    if (it == std::end(known)) return absl::InvalidArgumentError("--" + flag + ": unknown value '" + name + "'");
    out.push_back(it->first);
  }
  if (out.empty()) return absl::InvalidArgumentError("--" + flag + " needs at least one value");
  return out;
}

absl::Status RunTokenizer(const BenchSettings& f) {
  if (f.text_file.empty()) return absl::InvalidArgumentError("--tokenizer needs --text-file FILE");
  std::ifstream in(f.text_file, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open " + f.text_file);
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::vector<bench::TokenizerBenchRow>> rows =
      bench::RunTokenizerBench(f.tokenizer, text.str(), f.repeats);
  if (!rows.ok()) return rows.status();
  std::printf("tokenization of %s (%zu bytes), median of %d encodings: cold (a fresh tokenizer), warm (again)\n%s",
              f.text_file.c_str(), text.str().size(), f.repeats, bench::FormatTokenizerTable(*rows).c_str());
  if (f.json.empty()) return absl::OkStatus();
  return WriteJson(f.json, {{"text_file", f.text_file}, {"repeats", f.repeats},
                            {"rows", bench::TokenizerRowsToJson(*rows)}});
}

absl::Status RunShape(const BenchSettings& f) {
  if (f.shape != "7b") return absl::InvalidArgumentError("--shape: only 7b is known, got '" + f.shape + "'");
  ASSIGN_OR_RETURN(const Accelerator* cuda, CudaFor7b());
  bench::ShapeBenchOptions options;
  ASSIGN_OR_RETURN(options.precisions,
                   ParseNames("precisions", f.precisions, kPrecisionNames));
  ASSIGN_OR_RETURN(options.state_dtypes,
                   ParseNames("state-dtypes", f.state_dtypes, kStateDTypeNames));
  absl::StatusOr<double> bandwidth = cuda->MeasureCopyBandwidth(int64_t{2} << 30);
  if (!bandwidth.ok()) return bandwidth.status();
  absl::StatusOr<double> gemm_flops = cuda->MeasureBf16GemmFlops(8192);
  if (!gemm_flops.ok()) return gemm_flops.status();
  options.copy_bandwidth = *bandwidth;
  options.tensor_core_flops = *gemm_flops;
  if (f.batch_sizes) options.batch_sizes = *f.batch_sizes;
  if (f.speculative) options.verify_lengths = {2, 3, 4, 5};
  options.warm_up = f.warm_up;
  if (!f.peer.empty()) {
    ASSIGN_OR_RETURN(options.peer, bench::ReadPeerFigures(f.peer));
    std::fprintf(stderr, "bench: beside %s (%s)\n", options.peer->impl.c_str(), f.peer.c_str());
  }
  std::fprintf(stderr, "bench: copy bandwidth %.0f GB/s, bf16 GEMM %.0f TFLOP/s; making xLSTM-7b with random bf16 "
               "weights ...\n", *bandwidth / 1e9, *gemm_flops / 1e12);
  std::string table;
  absl::StatusOr<nlohmann::json> rows =
      bench::RunShapeBench(*cuda, bench::RandomBf16Weights(bench::Xlstm7bConfig(), 1), options, &table);
  if (!rows.ok()) return rows.status();
  std::printf("xLSTM-7b shape, bf16 weights%s; measured here: copy bandwidth %.0f GB/s (read + write), bf16 "
              "GEMM %.0f TFLOP/s%s\n%s", f.warm_up ? ", each backend warmed up as a server's" : "", *bandwidth / 1e9,
              *gemm_flops / 1e12, options.peer ? ("; peer (same session): " + options.peer->impl).c_str() : "",
              table.c_str());
  if (f.json.empty()) return absl::OkStatus();
  return WriteJson(f.json, {{"shape", "7b"},
                            {"warm_up", f.warm_up},
                            {"peer", options.peer ? nlohmann::json(options.peer->impl) : nlohmann::json()},
                            {"copy_bandwidth_bytes_per_s", *bandwidth},
                            {"bf16_gemm_flops", *gemm_flops},
                            {"rows", *rows}});
}

}  // namespace

int RunBench(const std::vector<std::string>& args) {
  BenchSettings f;
  FlagSet flags("xlserve bench",
                "(--speculative --prompts-from DIR | --shape 7b [--speculative --acceptance FILE] | --tokenizer FILE "
                "--text-file FILE) [flags]",
                "Measures decoding speed. With --speculative: greedy decoding of held-out text with\n"
                "speculation off, on (k = --num-draft) and auto, at each batch size: tokens per\n"
                "decode step, acceptance, tokens/s and the speed-up over plain decoding. With\n"
                "--shape 7b: decode step time at each batch size and TTFT on the CUDA backend, beside\n"
                "the HBM floor and the reference figures of docs/design.md §8; adding\n"
                "--speculative also measures verify passes of L = 2..5 tokens against a plain step;\n"
                "--record-acceptance FILE (with --speculative) writes the `on` runs' acceptance as a\n"
                "trace, and --shape 7b --speculative --acceptance FILE runs the --speculative table on\n"
                "that shape with random MTP heads (--model's layout) and the trace's acceptance replayed\n"
                "(--shape model: --model's config, small enough for the CPU): a system-cost measurement,\n"
                "not an output-quality one. With\n"
                "--tokenizer: encoding throughput of --text-file with each tokenizer.json.");
  flags.Add(BenchSettingsTable(), &f);
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("bench", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (absl::Status st = settings::CheckRanges(BenchSettingsTable(), f); !st.ok()) {
    return ReportError("bench", std::string(st.message()));
  }
  if (!f.acceptance.empty()) {
    if (f.shape.empty() || !f.speculative) return ReportError("bench", "--acceptance needs --shape and --speculative");
    if (absl::Status st = RunReplayedShape(f); !st.ok()) return ReportError("bench", std::string(st.message()));
    return 0;
  }
  if (!f.shape.empty()) {
    if (absl::Status st = RunShape(f); !st.ok()) return ReportError("bench", std::string(st.message()));
    return 0;
  }
  if (!f.tokenizer.empty()) {
    if (absl::Status st = RunTokenizer(f); !st.ok()) return ReportError("bench", std::string(st.message()));
    return 0;
  }
  if (!f.speculative) return ReportError("bench", "give --speculative, --shape 7b or --tokenizer");
  if (absl::Status st = RunSpeculative(f); !st.ok()) return ReportError("bench", std::string(st.message()));
  return 0;
}

}  // namespace xlserve::cli
