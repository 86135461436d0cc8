// FakeBackend: a deterministic toy model behind the Backend interface, for tests of the
// scheduler and the state store that must not depend on a real model's numbers or speed.
//
// A slot's state is a 64-bit hash of the tokens it has seen, and the logits after a token are
// one-hot (10 at Next(state), 0 elsewhere). So greedy decoding is a fixed function of the
// token history — whatever the batching, the prefill chunks, or the snapshots restored on the
// way — and a test can compute the expected completion with Greedy(). MTP head i predicts
// what greedy decoding would give i tokens later (stateless heads), except where
// `wrong_draft_every` or `wrong_draft` says to make a draft wrong. Every Forward, Commit and
// snapshot copy is recorded for the test to inspect. Speculation (defer_commit and Commit) is
// supported; device sampling is not.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/backend.h"

namespace xlserve::testing {

struct FakeBackendOptions {
  int vocab_size = 64;
  int mtp_heads = 0;
  bool wants_warm_up = false;
  // > 0: roughly one state in this many gets one wrong draft (which head depends on the state).
  int wrong_draft_every = 0;
  // When set, also wrong: head h's drafts in the pass numbered `pass` (Forward calls counted
  // from 0 since construction) where wrong_draft(pass, h); a test sets acceptance step by step.
  std::function<bool(int pass, int head)> wrong_draft;
  // Simulated time of a Forward (slept): `pass_seconds`, plus `verify_token_seconds` for each
  // token of a speculative (defer_commit) sequence, so that the step costs warm-up measures
  // are ones a test can predict.
  double pass_seconds = 0;
  double verify_token_seconds = 0;
  // When set, a Forward adds its simulated time here instead of sleeping (a clock for
  // WarmUpOptions::clock).
  double* clock = nullptr;
  // Choices that timing leaves open (Backend::OpenChoices): a Forward of `rows` rows in all made
  // while tuning is on opens the choice, and its taken candidate c adds seconds[c] to every
  // Forward of `rows` rows.
  struct Choice {
    int rows;
    std::vector<double> seconds;
    // Another choice (its index) that settling this one on any candidate but its first closes
    // unsettled, as the CUDA backend's SwiGLU epilogue closes its product's choice; -1: none.
    int closes = -1;
  };
  std::vector<Choice> choices;
};

class FakeBackend final : public Backend {
 public:
  struct Row {  // one sequence of a Forward call
    int slot;
    int tokens;
    bool defer;
    bool heads;
    bool tokens_only;
  };
  struct Copy {
    enum Kind { kSave, kRestore, kMove } kind;
    int slot;  // -1 for moves
    SnapshotRef from, to;
  };

  explicit FakeBackend(const FakeBackendOptions& options);

  // The tokens greedy decoding emits after `history` from the empty state.
  std::vector<int32_t> Greedy(std::span<const int32_t> history, int n) const;

  std::string_view name() const override { return "fake"; }
  const StateLayout& state_layout() const override { return layout_; }
  absl::Status AllocateSlots(int num_slots) override;
  int num_slots() const override { return static_cast<int>(slots_.size()); }
  absl::Status ResetSlot(int slot) override;
  absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) override;
  absl::Status Commit(std::span<const CommitInput> commits) override;
  bool SupportsSpeculation() const override { return true; }
  int num_mtp_heads() const override { return options_.mtp_heads; }
  int64_t snapshot_bytes() const override { return 1 << 20; }
  absl::Status AllocateSnapshots(int device, int host) override;
  absl::Status SaveSnapshot(int slot, SnapshotRef dst) override;
  absl::Status RestoreSnapshot(SnapshotRef src, int slot) override;
  absl::Status CopySnapshot(SnapshotRef src, SnapshotRef dst) override;
  bool WantsWarmUp() const override { return options_.wants_warm_up; }
  void SetShapeTuning(bool allowed) override { tuning = allowed; }
  std::vector<OpenChoice> OpenChoices() const override;
  absl::Status TakeCandidate(int id, int candidate, std::span<const double> pass_seconds) override;
  absl::Status ReadSlot(int slot, std::span<float> out) const override;
  absl::Status WriteSlot(int slot, std::span<const float> in) override;

  // What happened, for the test.
  std::vector<std::vector<Row>> forwards;
  std::vector<Copy> copies;
  bool tuning = true;  // as the backend's own default
  struct ChoiceState {  // one per FakeBackendOptions::choices
    bool opened = false, settled = false;
    int taken = 0;
    std::vector<double> pass_seconds;  // as settled
  };
  std::vector<ChoiceState> choice_states;
  // Tokens each slot's state has seen (a second record of the state, readable by tests).
  const std::vector<int32_t>& seen(int slot) const { return slots_[slot].seen; }
  // A snapshot buffer's token history; empty when never written.
  const std::vector<int32_t>& snapshot(SnapshotRef ref) const { return tiers_[static_cast<int>(ref.tier)][ref.index].seen; }
  // The next Forward fails with this status once (then the backend works again).
  absl::Status fail_next_forward = absl::OkStatus();

 private:
  struct State {
    uint64_t hash = 0x9e3779b97f4a7c15ull;
    std::vector<int32_t> seen;
  };
  static State Advance(State s, int32_t token);
  int32_t Next(const State& s) const;
  absl::Status CheckRef(SnapshotRef ref) const;

  FakeBackendOptions options_;
  StateLayout layout_;
  std::vector<State> slots_;
  std::vector<std::vector<int32_t>> deferred_;  // by slot: the last deferred forward's tokens
  std::vector<State> tiers_[2];
  int passes_ = 0;  // Forward calls so far (wrong_draft's `pass`)
};

}  // namespace xlserve::testing
