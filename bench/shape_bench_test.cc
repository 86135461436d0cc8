// The shape bench end to end on a fake accelerator (FakeBackend, engine/testing/fake_backend.h)
// and a small config: every table's rows, the interleaved verify rows, the server's warm-up
// first, and a same-session peer's columns. Timings are whatever the fake takes; only the
// structure is checked.
#include "bench/shape_bench.h"

#include <catch2/catch.hpp>

#include "engine/testing/fake_backend.h"

namespace xlserve::bench {
namespace {

class FakeAccelerator : public Accelerator {
 public:
  std::string_view name() const override { return "fake"; }
  int DeviceCount() const override { return 1; }
  absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights>, DType,
                                                         Precision) const override {
    testing::FakeBackendOptions o;
    o.vocab_size = 512;
    ++backends;
    return std::unique_ptr<Backend>(new testing::FakeBackend(o));
  }
  absl::StatusOr<double> MeasureCopyBandwidth(int64_t) const override { return 1e12; }
  absl::StatusOr<double> MeasureBf16GemmFlops(int) const override { return 1e14; }
  absl::Status SetStageProfiling(Backend*, bool) const override { return absl::OkStatus(); }
  absl::StatusOr<StageProfile> TakeStageProfile(Backend*) const override {
    return StageProfile{{"gemm", 0.5}, {"mlstm step", 0.25}};
  }
  absl::StatusOr<std::vector<GemmChoice>> GemmChoices(Backend*) const override { return std::vector<GemmChoice>{}; }
  absl::StatusOr<int64_t> DecodeGraphBuilds(const Backend*) const override { return 0; }
  mutable int backends = 0;
};

ModelConfig SmallConfig() {
  ModelConfig c;
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.num_blocks = 2;
  c.num_heads = 2;
  c.eos_token_ids = {2};
  return c;
}

ShapeBenchOptions SmallOptions() {
  ShapeBenchOptions o;
  o.batch_sizes = {1, 3};
  o.prompt_lengths = {16};
  o.state_dtypes = {DType::kBF16, DType::kF32};
  o.precisions = {Precision::kBf16};
  o.steps = 4;
  o.copy_bandwidth = 1e12;
  o.tensor_core_flops = 1e14;
  o.verify_lengths = {2, 4};
  return o;
}

std::vector<nlohmann::json> Rows(const nlohmann::json& rows, const std::string& kind) {
  std::vector<nlohmann::json> out;
  for (const auto& r : rows) {
    if (r["kind"] == kind) out.push_back(r);
  }
  return out;
}

TEST_CASE("the shape bench's tables on a fake accelerator, verify rows timed in turns with the plain step") {
  FakeAccelerator device;
  std::string table;
  const auto rows = RunShapeBench(device, RandomBf16Weights(SmallConfig(), 1), SmallOptions(), &table);
  REQUIRE(rows.ok());
  CHECK(device.backends == 2);  // one a state dtype
  const auto decode = Rows(*rows, "decode");
  CHECK(decode.size() == 4);
  for (const auto& d : decode) CHECK(d["eager_step_ms"].get<double>() > 0);
  CHECK(table.find("eager ms") != std::string::npos);
  CHECK(Rows(*rows, "prefill").size() == 1);
  CHECK(Rows(*rows, "mixed").size() == 3);  // batch 3: 1 x 64, 1 x 128, 2 x 128
  const auto verify = Rows(*rows, "verify");
  REQUIRE(verify.size() == 4);  // batches 1 and 3, L = 2 and 4, first state dtype only
  for (const auto& v : verify) {
    CHECK(v["state_dtype"] == "bf16");
    CHECK(v["rounds"] == 5);
    CHECK(v["plain_step_ms"].get<double>() > 0);
    CHECK(v["cost_ratio_min"].get<double>() <= v["cost_ratio"].get<double>());
    CHECK(v["cost_ratio"].get<double>() <= v["cost_ratio_max"].get<double>());
    CHECK(v["stage_ms"].contains("gemm"));
  }
  CHECK(table.find("L=4 ms (ratio, range)") != std::string::npos);
  CHECK(table.find("ref step ms") != std::string::npos);
  CHECK(table.find("peer ms") == std::string::npos);
}

TEST_CASE("the shape bench warms each backend up as a server first, and shows a peer's figures") {
  FakeAccelerator device;
  ShapeBenchOptions options = SmallOptions();
  options.verify_lengths.clear();
  options.warm_up = true;
  options.peer = PeerFigures{"peer impl", {{1, 7.5}}, {{16, 2.5}}};
  std::string table;
  const auto rows = RunShapeBench(device, RandomBf16Weights(SmallConfig(), 1), options, &table);
  REQUIRE(rows.ok());
  CHECK(table.find("peer ms") != std::string::npos);
  CHECK(table.find("ref step ms") == std::string::npos);
  for (const auto& d : Rows(*rows, "decode")) {
    INFO(d.dump());
    // The peer measured bf16 state at batch 1 only.
    CHECK(d.contains("peer_step_ms") == (d["state_dtype"] == "bf16" && d["batch"] == 1));
  }
  const auto prefill = Rows(*rows, "prefill");
  REQUIRE(prefill.size() == 1);
  CHECK(prefill[0]["peer_ttft_ms"] == 2.5);
}

}  // namespace
}  // namespace xlserve::bench
