// State snapshots on the CUDA backend: a slot saved to a device buffer, moved to pinned host
// memory and restored into another slot comes back bit for bit, in fp32 and bf16 states, with
// the copies issued back to back (their ordering is the backend's, not the test's), and a
// recorded speculative commit is in the saved state. Tagged "gpu".
#include <catch2/catch.hpp>

#include "engine/model/model_weights.h"
#include "tests/gpu/gpu_test_support.h"

namespace xlserve {
namespace {

std::vector<float> Read(const Backend& b, int slot) {
  std::vector<float> st(b.state_layout().slot_floats());
  REQUIRE(b.ReadSlot(slot, st).ok());
  return st;
}

void Run(Backend& b, int slot, const std::vector<int32_t>& tokens, ForwardOutput* out, bool defer = false) {
  SequenceInput in;
  in.slot = slot;
  in.tokens = tokens;
  in.mtp_heads = true;
  in.defer_commit = defer;
  in.all_logits = defer;
  REQUIRE(b.Forward(std::span<const SequenceInput>(&in, 1), out).ok());
}

std::vector<int32_t> Tokens(int n, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 37 + salt * 101) % 4000 + 1);
  return t;
}

TEST_CASE("snapshot -> spill to host -> restore is bit-exact, and copies keep their order") {
  auto weights = LoadModelWeights("models/xlstm-code-mtp");
  REQUIRE(weights.ok());
  for (DType state : {DType::kF32, DType::kBF16}) {
    INFO("state " << (state == DType::kF32 ? "f32" : "bf16"));
    auto gpu = testing::MakeCudaBackend(*weights, 4, state);
    REQUIRE(gpu->AllocateSnapshots(2, 2).ok());
    const SnapshotRef dev0{SnapshotTier::kDevice, 0}, dev1{SnapshotTier::kDevice, 1};
    const SnapshotRef host0{SnapshotTier::kHost, 0}, host1{SnapshotTier::kHost, 1};
    ForwardOutput out;
    Run(*gpu, 0, Tokens(150, 1), &out);
    Run(*gpu, 1, Tokens(70, 2), &out);
    const std::vector<float> a = Read(*gpu, 0), b = Read(*gpu, 1);
    REQUIRE(a != b);

    // Issued without a wait in between: save a, move it to host, overwrite its device buffer
    // with b, change slot 0, restore both into other slots.
    REQUIRE(gpu->SaveSnapshot(0, dev0).ok());
    REQUIRE(gpu->CopySnapshot(dev0, host0).ok());
    REQUIRE(gpu->SaveSnapshot(1, dev0).ok());
    Run(*gpu, 0, Tokens(5, 3), &out);
    REQUIRE(gpu->RestoreSnapshot(host0, 2).ok());
    REQUIRE(gpu->RestoreSnapshot(dev0, 3).ok());
    CHECK(Read(*gpu, 2) == a);
    CHECK(Read(*gpu, 3) == b);
    CHECK(Read(*gpu, 0) != a);

    // Host back to device, then into a slot: still the same bits.
    REQUIRE(gpu->CopySnapshot(host0, dev1).ok());
    REQUIRE(gpu->CopySnapshot(dev1, host1).ok());
    REQUIRE(gpu->RestoreSnapshot(host1, 3).ok());
    CHECK(Read(*gpu, 3) == a);

    // A restored state continues exactly like the original would.
    ForwardOutput from_original, from_restored;
    REQUIRE(gpu->RestoreSnapshot(host0, 0).ok());
    Run(*gpu, 0, Tokens(9, 4), &from_original);
    Run(*gpu, 2, Tokens(9, 4), &from_restored);
    CHECK(from_original.logits == from_restored.logits);
    CHECK(from_original.mtp_logits == from_restored.mtp_logits);

    CHECK(gpu->SaveSnapshot(0, SnapshotRef{SnapshotTier::kHost, 2}).code() == absl::StatusCode::kOutOfRange);
    CHECK(gpu->RestoreSnapshot(dev0, 9).code() == absl::StatusCode::kOutOfRange);
  }
}

TEST_CASE("a snapshot holds the state with a recorded speculative commit applied") {
  auto weights = LoadModelWeights("models/xlstm-code-mtp");
  REQUIRE(weights.ok());
  for (DType state : {DType::kF32, DType::kBF16}) {
    auto gpu = testing::MakeCudaBackend(*weights, 2, state);
    REQUIRE(gpu->AllocateSnapshots(1, 1).ok());
    ForwardOutput out;
    Run(*gpu, 0, Tokens(40, 5), &out);
    Run(*gpu, 0, Tokens(4, 6), &out, /*defer=*/true);
    const CommitInput commit{0, 3};
    REQUIRE(gpu->Commit(std::span<const CommitInput>(&commit, 1)).ok());
    REQUIRE(gpu->SaveSnapshot(0, SnapshotRef{SnapshotTier::kDevice, 0}).ok());
    REQUIRE(gpu->RestoreSnapshot(SnapshotRef{SnapshotTier::kDevice, 0}, 1).ok());
    CHECK(Read(*gpu, 1) == Read(*gpu, 0));
  }
}

}  // namespace
}  // namespace xlserve
