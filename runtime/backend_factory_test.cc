// Backend selection by device, in whichever build this is: with --config=cuda the CUDA
// accelerator is linked (and kAuto picks it only where a GPU is present), without it kCuda is
// a clear UNAVAILABLE and kAuto serves on the CPU.
#include <catch2/catch.hpp>
#include <string>

#include "engine/model/model_weights.h"
#include "runtime/accelerators.h"
#include "runtime/backend_factory.h"

namespace xlserve {
namespace {

std::shared_ptr<const ModelWeights> Weights(const std::string& name = "f32_base") {
  auto weights = LoadModelWeights("tests/golden/models/" + name);
  REQUIRE(weights.ok());
  return *weights;
}

TEST_CASE("the backend factory rejects state dtypes it cannot serve") {
  const auto weights = Weights();
  BackendOptions options;
  options.device = Device::kCpu;
  options.state_dtype = DType::kF16;
  CHECK(CreateBackend(weights, options).status().code() == absl::StatusCode::kInvalidArgument);
  options.state_dtype = DType::kBF16;
  const absl::Status bf16_on_cpu = CreateBackend(weights, options).status();
  CHECK(bf16_on_cpu.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(bf16_on_cpu.message()).find("CUDA") != std::string::npos);
  options.state_dtype = DType::kF32;
  auto cpu = CreateBackend(weights, options);
  REQUIRE(cpu.ok());
  CHECK((*cpu)->name() == "cpu");
}

TEST_CASE("precision: auto is bf16 for bf16 checkpoints on CUDA only; bf16 on the CPU when asked") {
  const auto f32 = Weights(), bf16 = Weights("bf16_base");
  using P = PrecisionSetting;
  CHECK(ResolvePrecision(P::kAuto, Device::kCuda, *bf16) == Precision::kBf16);
  CHECK(ResolvePrecision(P::kAuto, Device::kCuda, *f32) == Precision::kExact);
  CHECK(ResolvePrecision(P::kAuto, Device::kCpu, *bf16) == Precision::kExact);
  CHECK(ResolvePrecision(P::kExact, Device::kCuda, *bf16) == Precision::kExact);
  CHECK(ResolvePrecision(P::kBf16, Device::kCpu, *f32) == Precision::kBf16);
  BackendOptions options;
  options.device = Device::kCpu;
  for (const P setting : {P::kAuto, P::kBf16}) {
    options.precision = setting;
    auto cpu = CreateBackend(bf16, options);
    REQUIRE(cpu.ok());
    CHECK((*cpu)->precision() == (setting == P::kBf16 ? Precision::kBf16 : Precision::kExact));
  }
}

TEST_CASE("auto picks the CUDA backend only when it is built in and a GPU is present") {
  const Accelerator* cuda = runtime::FindAccelerator("cuda");
  CHECK(runtime::FindAccelerator("tpu") == nullptr);
  const bool gpu_here = cuda != nullptr && cuda->DeviceCount() > 0;
  BackendOptions options;
  options.device = Device::kAuto;
  auto backend = CreateBackend(Weights(), options);
  REQUIRE(backend.ok());
  CHECK((*backend)->name() == (gpu_here ? "cuda" : "cpu"));
}

TEST_CASE("asking for CUDA where it cannot run is UNAVAILABLE and says why") {
  const Accelerator* cuda = runtime::FindAccelerator("cuda");
  if (cuda != nullptr && cuda->DeviceCount() > 0) return;  // a GPU machine: the GPU tests cover it
  BackendOptions options;
  options.device = Device::kCuda;
  const absl::Status st = CreateBackend(Weights(), options).status();
  CHECK(st.code() == absl::StatusCode::kUnavailable);
  const std::string message(st.message());
  if (cuda == nullptr) {
    CHECK(message.find("built without the CUDA backend") != std::string::npos);
  } else {
    CHECK(message.find("no CUDA device") != std::string::npos);
  }
}

}  // namespace
}  // namespace xlserve
