#include "server/server_config.h"

namespace xlserve::server {
namespace {

using C = ServerConfig;
constexpr double kPorts = 65535;
constexpr double kLarge = 1 << 30;

}  // namespace

const settings::SettingsTable<ServerConfig>& ServerSettings() {
  static const settings::SettingsTable<ServerConfig> table = {
      {"model", &C::model, "model directory (config.json, safetensors, tokenizer.json)"},
      {"model_name", &C::model_name, "name reported and matched against requests (default: the directory name)"},
      {"host", &C::host, "address to bind"},
      {"port", &C::port, "gRPC port (0: any free port, printed at start)", {0, kPorts}},
      {"metrics_port", &C::metrics_port, "HTTP port of /metrics and /health (-1: off, 0: any free port)",
       {-1, kPorts}},
      {"device", &C::device, kDeviceNames, "backend (auto: cuda when a GPU is present)"},
      {"state_dtype", &C::state_dtype, kStateDTypeNames,
       "recurrent state storage (bf16: CUDA only; the maths stays fp32)"},
      {"precision", &C::precision, kPrecisionSettingNames,
       "products with bf16 weights: exact (~fp32), bf16 (bf16 activations into the tensor cores, fp32 "
       "accumulation; the maths of the state stays fp32), or auto: bf16 for a bf16 checkpoint on CUDA, else exact"},
      {"threads", &C::threads, "CPU backend threads (0: one per core)", {0, 4096}},
      {"tensor_parallel", &C::tensor_parallel,
       "ranks of a tensor-parallel split by heads, FFN and vocabulary (docs/design.md §10); the CPU backend "
       "runs them as threads with the bits of one rank; CUDA runs one rank", {1, 8}},
      {"max_num_seqs", &C::max_num_seqs, "state slots: sequences decoding at once", {1, 1 << 16}},
      {"max_queue", &C::max_queue, "waiting requests before RESOURCE_EXHAUSTED", {1, kLarge}},
      {"max_prompt_tokens", &C::max_prompt_tokens, "longest prompt accepted", {1, kLarge}},
      {"max_tokens", &C::max_tokens, "largest max_tokens a request may ask", {1, kLarge}},
      {"default_max_tokens", &C::default_max_tokens, "max_tokens of requests that give none", {1, kLarge}},
      {"max_n", &C::max_n, "largest n (completions per request)", {1, 1 << 16}},
      {"max_message_bytes", &C::max_message_bytes, "largest gRPC message", {1, kLarge}},
      {"step_token_budget", &C::step_token_budget,
       "rows of one forward pass: decode and verify rows first, prompt chunks the rest", {1, kLarge}},
      {"prefill_chunk_while_decoding", &C::prefill_chunk_while_decoding,
       "prompt tokens in a forward pass that also decodes: bounds running streams' time per token when a prompt "
       "arrives (7B on an H200, bf16: 64 tokens beside 31 decode rows cost 1.4x a plain step, 128 tokens 1.6x)",
       {1, kLarge}},
      {"request_timeout_s", &C::request_timeout_s, "seconds before a request without a deadline ends", {1e-3, 1e9}},
      {"shutdown_grace_s", &C::shutdown_grace_s,
       "seconds running streams may finish after SIGTERM before they are cancelled", {0, 1e9}},
      {"state_cache_gpu_mb", &C::state_cache_gpu_mb,
       "GPU memory for kept states (prefix cache, sessions, preemption), MiB; -1: what is free after weights, "
       "slots and warm-up, less a margin; 0: none",
       {-1, kLarge}},
      {"state_cache_host_mb", &C::state_cache_host_mb,
       "pinned host memory for kept states, MiB; -1: an eighth of the machine's memory, at most 8 GiB; 0: none",
       {-1, kLarge}},
      {"prefix_cache_min_tokens", &C::prefix_cache_min_tokens, "shortest prompt prefix worth keeping a state for",
       {1, kLarge}},
      {"max_sessions", &C::max_sessions, "sessions kept at most, besides the byte bound (0: sessions off)",
       {0, kLarge}},
      {"session_ttl_s", &C::session_ttl_s, "seconds an idle session is kept", {1e-3, 1e9}},
      {"speculation", &C::speculation, kSpeculationModeNames,
       "default self-speculative decoding of requests with the model's MTP heads (auto: draft length from measured "
       "acceptance and step cost)"},
      {"num_draft", &C::num_draft, "default drafts per speculative step", {0, 16}},
      {"warm_up", &C::warm_up,
       "run every step shape once before serving (GEMM choices and CUDA graphs ready; nothing tuned in a live "
       "step)"},
      {"api_key_file", &C::api_key_file,
       "file of API keys, one per line (also $XLSERVE_API_KEYS, comma-separated): XlServe calls then need "
       "authorization: Bearer KEY metadata, and a session belongs to the key that opened it"},
      {"tls_cert", &C::tls_cert_file, "PEM certificate chain: serve gRPC over TLS (with tls_key)"},
      {"tls_key", &C::tls_key_file, "PEM private key of tls_cert"},
      {"tls_client_ca", &C::tls_client_ca_file, "PEM roots: require client certificates signed by them"},
      {"reflection", &C::reflection, "serve gRPC server reflection (--reflection=false: off)"},
  };
  return table;
}

absl::Status ValidateServerConfig(const ServerConfig& c) {
  if (absl::Status st = settings::CheckRanges(ServerSettings(), c); !st.ok()) return st;
  if (c.default_max_tokens > c.max_tokens) {
    return absl::InvalidArgumentError("default_max_tokens must be <= max_tokens");
  }
  // Every decoding sequence's rows fit one pass, with room left for a prompt chunk.
  const int decode_rows = c.max_num_seqs * (1 + c.num_draft);
  if (c.step_token_budget <= decode_rows) {
    return absl::InvalidArgumentError("step_token_budget (" + std::to_string(c.step_token_budget) +
                                      ") must exceed max_num_seqs * (1 + num_draft) = " +
                                      std::to_string(decode_rows) + ", the rows of a step where every sequence verifies");
  }
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return absl::InvalidArgumentError("tls_cert and tls_key go together");
  }
  if (!c.tls_client_ca_file.empty() && c.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("tls_client_ca needs tls_cert and tls_key");
  }
  return absl::OkStatus();
}

}  // namespace xlserve::server
