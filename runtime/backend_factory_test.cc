// Backend selection by device name, in whichever build this is: with --config=cuda the CUDA
// accelerator is linked (and "auto" picks it only where a GPU is present), without it "cuda" is
// a clear UNAVAILABLE and "auto" serves on the CPU.
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

TEST_CASE("the backend factory rejects unknown devices and state dtypes it cannot serve") {
  const auto weights = Weights();
  BackendOptions options;
  options.device = "tpu";
  CHECK(CreateBackend(weights, options).status().code() == absl::StatusCode::kInvalidArgument);
  options.device = "cpu";
  options.state_dtype = "f16";
  CHECK(CreateBackend(weights, options).status().code() == absl::StatusCode::kInvalidArgument);
  options.state_dtype = "bf16";
  const absl::Status bf16_on_cpu = CreateBackend(weights, options).status();
  CHECK(bf16_on_cpu.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(bf16_on_cpu.message()).find("CUDA") != std::string::npos);
  options.state_dtype = "f32";
  auto cpu = CreateBackend(weights, options);
  REQUIRE(cpu.ok());
  CHECK((*cpu)->name() == "cpu");
}

TEST_CASE("precision: auto is bf16 for bf16 checkpoints on CUDA only; bf16 on the CPU when asked") {
  const auto f32 = Weights(), bf16 = Weights("bf16_base");
  CHECK(*ResolvePrecision("auto", "cuda", *bf16) == Precision::kBf16);
  CHECK(*ResolvePrecision("auto", "cuda", *f32) == Precision::kExact);
  CHECK(*ResolvePrecision("auto", "cpu", *bf16) == Precision::kExact);
  CHECK(*ResolvePrecision("exact", "cuda", *bf16) == Precision::kExact);
  CHECK(*ResolvePrecision("bf16", "cpu", *f32) == Precision::kBf16);
  CHECK(ResolvePrecision("fp8", "cuda", *bf16).status().code() == absl::StatusCode::kInvalidArgument);
  BackendOptions options;
  options.device = "cpu";
  options.precision = "fp8";
  CHECK(CreateBackend(bf16, options).status().code() == absl::StatusCode::kInvalidArgument);
  for (const char* setting : {"auto", "bf16"}) {
    options.precision = setting;
    auto cpu = CreateBackend(bf16, options);
    REQUIRE(cpu.ok());
    CHECK((*cpu)->precision() == (std::string(setting) == "bf16" ? Precision::kBf16 : Precision::kExact));
  }
}

TEST_CASE("auto picks the CUDA backend only when it is built in and a GPU is present") {
  const Accelerator* cuda = runtime::FindAccelerator("cuda");
  CHECK(runtime::FindAccelerator("tpu") == nullptr);
  const bool gpu_here = cuda != nullptr && cuda->DeviceCount() > 0;
  BackendOptions options;
  options.device = "auto";
  auto backend = CreateBackend(Weights(), options);
  REQUIRE(backend.ok());
  CHECK((*backend)->name() == (gpu_here ? "cuda" : "cpu"));
}

TEST_CASE("asking for CUDA where it cannot run is UNAVAILABLE and says why") {
  const Accelerator* cuda = runtime::FindAccelerator("cuda");
  if (cuda != nullptr && cuda->DeviceCount() > 0) return;  // a GPU machine: the GPU tests cover it
  BackendOptions options;
  options.device = "cuda";
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
