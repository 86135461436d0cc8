// `xlserve generate`: one prompt through a local model, printed as text or as JSON.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flags.h"
#include "engine/generator.h"
#include "engine/model/model_weights.h"
#include "engine/state_cache.h"
#include "engine/tokenizer/streaming_decoder.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "runtime/backend_factory.h"
#include "spdlog/spdlog.h"

namespace xlserve::cli {
namespace {

struct GenerateFlags {
  std::string model;
  std::optional<std::string> prompt;
  std::optional<std::vector<int>> prompt_ids;
  int max_new_tokens = 32;
  std::optional<double> temperature;
  double top_p = 1.0;
  int top_k = 0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 0;
  bool json = false;
  bool ignore_eos = false;
  std::string device = "auto";
  std::string state_dtype = "f32";
  std::string precision = "auto";
  int threads = 0;
  int chunk_size = 64;
  std::string speculative = "auto";
  int num_draft = 3;
};

const char* FinishReasonName(FinishReason r) { return r == FinishReason::kStop ? "stop" : "length"; }

absl::Status Run(const GenerateFlags& f) {
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
  if (f.max_new_tokens < 0) {
    return absl::InvalidArgumentError("--max-new-tokens must be >= 0, got " +
                                      std::to_string(f.max_new_tokens));
  }
  request.max_new_tokens = f.max_new_tokens;
  request.sampling.temperature = static_cast<float>(f.temperature.value_or(0.0));
  request.sampling.top_p = static_cast<float>(f.top_p);
  request.sampling.top_k = f.top_k;
  request.sampling.min_p = static_cast<float>(f.min_p);
  request.sampling.repetition_penalty = static_cast<float>(f.repetition_penalty);
  request.sampling.presence_penalty = static_cast<float>(f.presence_penalty);
  request.sampling.frequency_penalty = static_cast<float>(f.frequency_penalty);
  request.sampling.seed = f.seed;
  if (!f.ignore_eos) request.stop_token_ids.assign(config.eos_token_ids.begin(), config.eos_token_ids.end());

  if (f.speculative == "off") {
    request.speculation = SpeculationMode::kOff;
  } else if (f.speculative == "on") {
    request.speculation = SpeculationMode::kOn;
  } else if (f.speculative == "auto") {
    request.speculation = SpeculationMode::kAuto;
  } else {
    return absl::InvalidArgumentError("--speculative must be off, on or auto, got '" + f.speculative + "'");
  }
  if (f.num_draft < 0) {
    return absl::InvalidArgumentError("--num-draft must be >= 0, got " + std::to_string(f.num_draft));
  }
  request.num_draft = f.num_draft;

  BackendOptions backend_options;
  backend_options.device = f.device;
  backend_options.state_dtype = f.state_dtype;
  backend_options.precision = f.precision;
  backend_options.num_threads = f.threads;
  backend_options.chunk_size = f.chunk_size;
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(*weights, backend_options);
  if (!backend.ok()) return backend.status();
  absl::StatusOr<StateCache> cache = StateCache::Create(backend->get(), 1);
  if (!cache.ok()) return cache.status();
  Generator generator(backend->get(), &*cache);

  // Plain output streams text as it is made; JSON output is one object at the end.
  std::unique_ptr<StreamingDecoder> stream;
  if (!f.json && tokenizer) stream = std::make_unique<StreamingDecoder>(*tokenizer);
  auto on_token = [&](int32_t id) {
    if (f.json) return;
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

  if (!f.json) {
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
  out["finish_reason"] = FinishReasonName(result->finish_reason);
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
  GenerateFlags f;
  FlagSet flags("xlserve generate", "--model DIR (--prompt TEXT | --prompt-ids 1,2,3) [flags]",
                "Generates a continuation of one prompt with a local xLSTM model. Greedy unless\n"
                "--temperature is given. A model directory without tokenizer.json works with ids.");
  flags.AddString("model", &f.model, "model directory (config.json, safetensors, tokenizer.json)");
  flags.AddOptionalString("prompt", &f.prompt, "prompt text (needs the model's tokenizer.json)");
  flags.AddIntList("prompt-ids", &f.prompt_ids, "prompt as comma-separated token ids");
  flags.AddInt("max-new-tokens", &f.max_new_tokens, "tokens to generate at most");
  flags.AddOptionalDouble("temperature", &f.temperature, "sampling temperature; 0 or absent: greedy");
  flags.AddDouble("top-p", &f.top_p, "nucleus sampling mass");
  flags.AddInt("top-k", &f.top_k, "keep the k most likely tokens; 0: off");
  flags.AddDouble("min-p", &f.min_p, "drop tokens below min-p times the top probability");
  flags.AddDouble("repetition-penalty", &f.repetition_penalty, "penalty for seen tokens; 1: off");
  flags.AddDouble("presence-penalty", &f.presence_penalty, "OpenAI presence penalty");
  flags.AddDouble("frequency-penalty", &f.frequency_penalty, "OpenAI frequency penalty");
  flags.AddUint64("seed", &f.seed, "random seed for sampling");
  flags.AddBool("json", &f.json, "print one JSON object (ids, text, the prompt's last logits)");
  flags.AddBool("ignore-eos", &f.ignore_eos, "keep generating past end-of-sequence tokens");
  flags.AddString("speculative", &f.speculative,
                  "self-speculative decoding with the model's MTP heads: off, on or auto");
  flags.AddInt("num-draft", &f.num_draft, "drafts per step at most (on: always, auto: adaptive)");
  flags.AddString("device", &f.device, "backend: auto (cuda when a GPU is present), cpu or cuda");
  flags.AddString("state-dtype", &f.state_dtype, "recurrent state storage: f32, or bf16 (CUDA only)");
  flags.AddString("precision", &f.precision,
                  "products with bf16 weights: exact, bf16 (bf16 activations), or auto (bf16 for a bf16 checkpoint on "
                  "CUDA)");
  flags.AddInt("threads", &f.threads, "CPU backend threads; 0: one per core");
  flags.AddInt("chunk-size", &f.chunk_size, "tokens per chunk of the chunkwise prefill");
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("generate", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (absl::Status st = Run(f); !st.ok()) return ReportError("generate", std::string(st.message()));
  return 0;
}

}  // namespace xlserve::cli
