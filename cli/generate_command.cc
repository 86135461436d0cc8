// `xlserve generate`: one prompt through a local model, printed as text or as JSON.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flags.h"
#include "engine/device.h"
#include "engine/generator.h"
#include "engine/model/model_weights.h"
#include "engine/state_cache.h"
#include "engine/tokenizer/streaming_decoder.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/util/dtype.h"
#include "nlohmann/json.hpp"
#include "runtime/backend_factory.h"
#include "spdlog/spdlog.h"

namespace xlserve::cli {
namespace {

struct GenerateSettings {
  std::string model;
  std::optional<std::string> prompt;
  std::optional<std::vector<int>> prompt_ids;
  int max_tokens = 32;
  std::optional<double> temperature;
  double top_p = 1.0;
  int top_k = 0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 0;
  bool print_json = false;
  bool ignore_eos = false;
  SpeculationMode speculation = SpeculationMode::kAuto;
  int num_draft = 3;
  Device device = Device::kAuto;
  DType state_dtype = DType::kF32;
  PrecisionSetting precision = PrecisionSetting::kAuto;
  int threads = 0;
  int tensor_parallel = 1;
  int chunk_size = 64;
};

// Settings that `serve` has too are spelt as there (server/server_config.cc).
const settings::SettingsTable<GenerateSettings>& GenerateSettingsTable() {
  using G = GenerateSettings;
  static const settings::SettingsTable<GenerateSettings> table = {
      {"model", &G::model, "model directory (config.json, safetensors, tokenizer.json)"},
      {"prompt", &G::prompt, "prompt text (needs the model's tokenizer.json)"},
      {"prompt_ids", &G::prompt_ids, "prompt as comma-separated token ids"},
      {"max_tokens", &G::max_tokens, "tokens to generate at most", {0, 1 << 30}},
      {"temperature", &G::temperature, "sampling temperature; 0 or absent: greedy"},
      {"top_p", &G::top_p, "nucleus sampling mass"},
      {"top_k", &G::top_k, "keep the k most likely tokens; 0: off"},
      {"min_p", &G::min_p, "drop tokens below min-p times the top probability"},
      {"repetition_penalty", &G::repetition_penalty, "penalty for seen tokens; 1: off"},
      {"presence_penalty", &G::presence_penalty, "OpenAI presence penalty"},
      {"frequency_penalty", &G::frequency_penalty, "OpenAI frequency penalty"},
      {"seed", &G::seed, "random seed for sampling"},
      {"print_json", &G::print_json, "print one JSON object (ids, text, the prompt's last logits)"},
      {"ignore_eos", &G::ignore_eos, "keep generating past end-of-sequence tokens"},
      {"speculation", &G::speculation, kSpeculationModeNames,
       "self-speculative decoding with the model's MTP heads (auto: draft length from measured acceptance and "
       "step cost)"},
      {"num_draft", &G::num_draft, "drafts per step at most (on: always, auto: adaptive)", {0, 16}},
      {"device", &G::device, kDeviceNames, "backend (auto: cuda when a GPU is present)"},
      {"state_dtype", &G::state_dtype, kStateDTypeNames,
       "recurrent state storage (bf16: CUDA only; the maths stays fp32)"},
      {"precision", &G::precision, kPrecisionSettingNames,
       "products with bf16 weights: exact, bf16 (bf16 activations), or auto (bf16 for a bf16 checkpoint on CUDA)"},
      {"threads", &G::threads, "CPU backend threads (0: one per core)", {0, 4096}},
      {"tensor_parallel", &G::tensor_parallel,
       "ranks of a tensor-parallel split by heads, FFN and vocabulary (docs/design.md §10); the CPU backend "
       "runs them as threads with the bits of one rank; CUDA runs one rank", {1, 8}},
      {"chunk_size", &G::chunk_size, "tokens per chunk of the chunkwise prefill", {1, 1 << 20}},
  };
  return table;
}

absl::Status Run(const GenerateSettings& f) {
  if (absl::Status st = settings::CheckRanges(GenerateSettingsTable(), f); !st.ok()) return st;
  if (f.model.empty()) return absl::InvalidArgumentError("--model DIR is required");
  if (f.prompt.has_value() == f.prompt_ids.has_value()) {
    return absl::InvalidArgumentError("give exactly one of --prompt TEXT and --prompt-ids 1,2,3");
  }
  absl::StatusOr<std::shared_ptr<const ModelWeights>> weights = LoadModelWeights(f.model);
  if (!weights.ok()) return weights.status();
  const ModelConfig& config = (*weights)->config;

  absl::StatusOr<std::unique_ptr<Tokenizer>> loaded = Tokenizer::FromModelDirectory(f.model);
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<Tokenizer> tokenizer = std::move(*loaded);
  if (!tokenizer && f.prompt) {
    return absl::InvalidArgumentError(
        "--prompt needs a tokenizer, but " + (std::filesystem::path(f.model) / "tokenizer.json").string() +
        " does not exist; pass token ids with --prompt-ids instead");
  }

  GenerationRequest request;
  if (f.prompt) {
    absl::StatusOr<std::vector<int>> ids = tokenizer->Encode(*f.prompt);
    if (!ids.ok()) return ids.status();
    request.prompt_ids.assign(ids->begin(), ids->end());
    if (request.prompt_ids.empty()) return absl::InvalidArgumentError("the prompt encodes to no tokens");
  } else {
    request.prompt_ids.assign(f.prompt_ids->begin(), f.prompt_ids->end());
  }
  for (int32_t id : request.prompt_ids) {
    if (id < 0 || id >= config.vocab_size) {
      return absl::InvalidArgumentError("prompt token id " + std::to_string(id) +
                                        " is outside the model's vocabulary [0, " +
                                        std::to_string(config.vocab_size) + ")");
    }
  }
  request.max_new_tokens = f.max_tokens;
  request.sampling.temperature = static_cast<float>(f.temperature.value_or(0.0));
  request.sampling.top_p = static_cast<float>(f.top_p);
  request.sampling.top_k = f.top_k;
  request.sampling.min_p = static_cast<float>(f.min_p);
  request.sampling.repetition_penalty = static_cast<float>(f.repetition_penalty);
  request.sampling.presence_penalty = static_cast<float>(f.presence_penalty);
  request.sampling.frequency_penalty = static_cast<float>(f.frequency_penalty);
  request.sampling.seed = f.seed;
  if (!f.ignore_eos) request.stop_token_ids.assign(config.eos_token_ids.begin(), config.eos_token_ids.end());

  request.speculation = f.speculation;
  request.num_draft = f.num_draft;

  BackendOptions backend_options;
  backend_options.device = f.device;
  backend_options.state_dtype = f.state_dtype;
  backend_options.precision = f.precision;
  backend_options.num_threads = f.threads;
  backend_options.tensor_parallel = f.tensor_parallel;
  backend_options.chunk_size = f.chunk_size;
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(*weights, backend_options);
  if (!backend.ok()) return backend.status();
  absl::StatusOr<StateCache> cache = StateCache::Create(backend->get(), 1);
  if (!cache.ok()) return cache.status();
  Generator generator(backend->get(), &*cache);

  // Plain output streams text as it is made; JSON output is one object at the end.
  std::unique_ptr<StreamingDecoder> stream;
  if (!f.print_json && tokenizer) stream = std::make_unique<StreamingDecoder>(*tokenizer);
  auto on_token = [&](int32_t id) {
    if (f.print_json) return;
    if (stream) {
      // Ids the model knows but the tokenizer does not (padded vocabularies) print as U+FFFD.
      absl::StatusOr<std::string> piece = stream->Push(id);
      std::fputs(piece.ok() ? piece->c_str() : "\xEF\xBF\xBD", stdout);
    } else {
      std::printf("%d ", id);
    }
    std::fflush(stdout);
  };
  absl::StatusOr<GenerationResult> result = generator.Generate(request, on_token);
  if (!result.ok()) return result.status();

  if (!f.print_json) {
    if (stream) std::fputs(stream->Flush().c_str(), stdout);
    std::fputs("\n", stdout);
    return absl::OkStatus();
  }
  nlohmann::json out;
  out["prompt_ids"] = request.prompt_ids;
  out["tokens"] = result->tokens;
  if (tokenizer) {
    absl::StatusOr<std::string> text =
        tokenizer->Decode(std::vector<int>(result->tokens.begin(), result->tokens.end()));
    if (!text.ok()) return text.status();
    out["text"] = *text;
  } else {
    out["text"] = nullptr;
  }
  out["finish_reason"] = result->finish_reason == FinishReason::kStop ? "stop" : "length";
  out["speculative"] = result->speculative;
  out["steps"] = result->steps;
  out["drafted_tokens"] = result->drafted_tokens;
  out["accepted_drafts"] = result->accepted_drafts;
  out["prompt_last_logits"] = result->prompt_last_logits;
  std::puts(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return absl::OkStatus();
}

}  // namespace

int RunGenerate(const std::vector<std::string>& args) {
  GenerateSettings f;
  FlagSet flags("xlserve generate", "--model DIR (--prompt TEXT | --prompt-ids 1,2,3) [flags]",
                "Generates a continuation of one prompt with a local xLSTM model. Greedy unless\n"
                "--temperature is given. A model directory without tokenizer.json works with ids.");
  flags.Add(GenerateSettingsTable(), &f);
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("generate", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (absl::Status st = Run(f); !st.ok()) return ReportError("generate", std::string(st.message()));
  return 0;
}

}  // namespace xlserve::cli
