#include "tools/bench/shape_bench.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include "engine/model/checkpoint_layout.h"
#include "engine/util/dtype.h"
#include "engine/util/status_macros.h"
#include "kernels/cuda_backend.h"

namespace xlserve::bench {
namespace {

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

struct HostTensors {
  std::vector<std::vector<uint16_t>> buffers;
};

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
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

absl::StatusOr<nlohmann::json> RunShapeBench(std::shared_ptr<const ModelWeights> weights,
                                             const ShapeBenchOptions& options, std::string* table) {
  const ModelConfig& cfg = weights->config;
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, kernels::CreateCudaBackend(weights, {}));
  // Bytes a decode step must move: every weight matrix once (the embedding table only by the
  // rows it gathers), plus each sequence's state read and written.
  double weight_bytes = 0;
  for (const ExpectedTensor& e : ExpectedCheckpointTensors(cfg)) {
    if (e.name == "backbone.embeddings.weight") continue;
    double n = 2;
    for (int64_t s : e.shape) n *= s;
    weight_bytes += n;
  }
  const double state_bytes = double(backend->state_layout().slot_floats()) * sizeof(float);
  double params = 0;
  for (const ExpectedTensor& e : ExpectedCheckpointTensors(cfg)) {
    double n = 1;
    for (int64_t s : e.shape) n *= s;
    params += n;
  }
  nlohmann::json rows = nlohmann::json::array();
  char line[512];
  *table += "decode (fp32 state): step time vs the HBM floor and the reference of DESIGN §8\n";
  std::snprintf(line, sizeof(line), "%6s %10s %10s %11s %9s %12s %10s\n", "batch", "step ms", "tok/s", "floor ms",
                "of floor", "ref step ms", "vs ref");
  *table += line;
  for (int batch : options.batch_sizes) {
    RETURN_IF_ERROR(backend->AllocateSlots(batch));
    std::vector<int32_t> tokens(batch);
    std::vector<SequenceInput> seqs(batch);
    for (int i = 0; i < batch; ++i) {
      tokens[i] = 3 + i;
      seqs[i] = SequenceInput{i, std::span<const int32_t>(&tokens[i], 1), false};
    }
    ForwardOutput out;
    for (int w = 0; w < 3; ++w) RETURN_IF_ERROR(backend->Forward(seqs, &out));
    const auto start = std::chrono::steady_clock::now();
    for (int s = 0; s < options.steps; ++s) RETURN_IF_ERROR(backend->Forward(seqs, &out));
    const double step_ms = Seconds(start) / options.steps * 1e3;
    const double floor_ms = (weight_bytes + 2 * state_bytes * batch) / options.copy_bandwidth * 1e3;
    const double ref = ReferenceStepMs(batch);
    std::snprintf(line, sizeof(line), "%6d %10.2f %10.0f %11.2f %8.0f%% %12.2f %9.2fx\n", batch, step_ms,
                  batch / step_ms * 1e3, floor_ms, 100 * floor_ms / step_ms, ref, ref > 0 ? ref / step_ms : 0.0);
    *table += line;
    rows.push_back({{"kind", "decode"}, {"batch", batch}, {"step_ms", step_ms}, {"tokens_per_s", batch / step_ms * 1e3},
                    {"floor_ms", floor_ms}, {"fraction_of_floor", floor_ms / step_ms}, {"reference_step_ms", ref}});
  }
  *table += "\nprefill, batch 1: time to first token vs the tensor-core roofline\n";
  std::snprintf(line, sizeof(line), "%8s %10s %12s %14s\n", "prompt", "TTFT ms", "TFLOP/s", "of bf16 peak");
  *table += line;
  RETURN_IF_ERROR(backend->AllocateSlots(1));
  for (int len : options.prompt_lengths) {
    std::vector<int32_t> prompt(len);
    for (int i = 0; i < len; ++i) prompt[i] = 3 + (i * 7919) % (cfg.vocab_size - 3);
    SequenceInput s{0, prompt, false};
    ForwardOutput out;
    RETURN_IF_ERROR(backend->ResetSlot(0));
    RETURN_IF_ERROR(backend->Forward(std::span<const SequenceInput>(&s, 1), &out));
    RETURN_IF_ERROR(backend->ResetSlot(0));
    const auto start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(backend->Forward(std::span<const SequenceInput>(&s, 1), &out));
    const double ms = Seconds(start) * 1e3;
    const double flops = 2.0 * params * len;
    std::snprintf(line, sizeof(line), "%8d %10.1f %12.1f %13.1f%%\n", len, ms, flops / (ms / 1e3) / 1e12,
                  100 * flops / (ms / 1e3) / options.peak_flops);
    *table += line;
    rows.push_back({{"kind", "prefill"}, {"prompt_tokens", len}, {"ttft_ms", ms},
                    {"tflops", flops / (ms / 1e3) / 1e12}, {"fraction_of_peak", flops / (ms / 1e3) / options.peak_flops}});
  }
  return rows;
}

}  // namespace xlserve::bench
