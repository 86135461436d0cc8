// Backend: the one interface through which the engine runs the model on a device.
//
// A backend instance is created for one loaded model (it keeps a shared reference to the
// immutable ModelWeights) and owns everything that belongs to a running engine: the pool of
// recurrent-state slots, scratch buffers, threads or streams. Calls come from one engine
// thread; a backend is not safe for concurrent use.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/sampling/penalties.h"
#include "engine/sampling/sampling_params.h"
#include "engine/state_layout.h"

namespace xlserve {

// A token picked by the backend from the logits after a sequence's last token (backends with
// SamplesOnDevice()): exactly the token Sampler::Sample (engine/sampling/sampler.h) returns for
// that row and `history` when its stream stands at draw `draw_index`, that is, greedy takes no
// draw and any other setting takes draw `draw_index`. Up to the double sums that
// engine/sampling/distribution.h allows to run in another order.
struct DeviceSampling {
  SamplingParams params;  // must pass ValidateSamplingParams
  TokenHistory history;   // views: the caller keeps the ids alive during Forward()
  uint64_t draw_index = 0;
};

// The work of one sequence in a forward pass: run `tokens` from the state held in `slot`,
// advancing that state past the last token.
struct SequenceInput {
  int slot = -1;
  std::span<const int32_t> tokens;  // at least one token; ids < vocab_size
  bool all_logits = false;          // logits for every position, not only the last
  // Also run the model's multi-token-prediction heads 1..n-1 (advancing the state of stateful
  // heads) and return their logits at the same rows. A sequence that ever drafts must set this
  // on every call, so that its heads' states follow every token.
  bool mtp_heads = false;
  // Speculative verify (DESIGN §4): leave the slot's state as it is and keep what Commit()
  // needs to advance it later by any prefix of `tokens`.
  bool defer_commit = false;
  // The caller reads no logits of this sequence, only ForwardOutput's argmax of its rows or
  // its sampled token: when every sequence of a call sets this, a backend may skip returning
  // the logits.
  bool tokens_only = false;
  // Pick the token after the last row on the device (SamplesOnDevice() backends only), into
  // ForwardOutput::sampled. Null: none. The caller keeps it alive during Forward().
  const DeviceSampling* sample = nullptr;
};

// Where a snapshot buffer lives: kDevice beside the state slots (GPU memory on CUDA; host
// memory on the CPU backend), kHost in pinned host memory.
enum class SnapshotTier : int { kDevice = 0, kHost = 1 };
struct SnapshotRef {
  SnapshotTier tier = SnapshotTier::kDevice;
  int index = -1;
  bool operator==(const SnapshotRef&) const = default;
};

// A backend's choice between implementations of one step shape that timing them alone left
// open (Backend::OpenChoices): `candidates` of them, the first the one timing picked.
struct OpenChoice {
  int id = 0;
  int candidates = 0;
};

// How a backend multiplies activations by bf16 weights (the `precision` setting; products with
// fp32 weights stay fp32 either way). The recurrent state's maths is fp32 in both.
enum class Precision {
  kExact,  // ~fp32-accurate products (the CUDA backend feeds the activations as a bf16 hi+lo pair)
  kBf16,   // activations rounded to bf16 into the tensor cores, fp32 accumulation: half the work
};
constexpr std::string_view PrecisionName(Precision p) { return p == Precision::kBf16 ? "bf16" : "exact"; }
inline constexpr std::pair<Precision, std::string_view> kPrecisionNames[] = {{Precision::kBf16, "bf16"},
                                                                             {Precision::kExact, "exact"}};
// The `precision` setting: one of the two, or kAuto (bf16 for a bf16 checkpoint on CUDA, else
// exact; runtime/backend_factory.h resolves it).
enum class PrecisionSetting { kAuto, kExact, kBf16 };
inline constexpr std::pair<PrecisionSetting, std::string_view> kPrecisionSettingNames[] = {
    {PrecisionSetting::kAuto, "auto"}, {PrecisionSetting::kExact, "exact"}, {PrecisionSetting::kBf16, "bf16"}};

// Advances `slot` by the first `num_tokens` tokens of its last deferred Forward().
struct CommitInput {
  int slot = -1;
  int num_tokens = 0;
};

// Logits of a forward pass, fp32, row-major [rows, vocab]. Sequence i owns rows
// [row_offset[i], row_offset[i + 1]): one row, or one per token with all_logits.
struct ForwardOutput {
  int vocab_size = 0;
  std::vector<float> logits;
  std::vector<int> row_offset;
  // With mtp_heads: logits of heads 1..num_mtp_heads at each row, [rows, num_mtp_heads, vocab]
  // (rows of sequences without mtp_heads are zeros). Head i predicts the token i positions
  // after the one head 0 predicts.
  int num_mtp_heads = 0;
  std::vector<float> mtp_logits;
  // Always filled: the argmax of every returned row (lowest index among ties, -1 when no logit
  // is finite), and of every MTP head row, [rows, num_mtp_heads]. `logits` and `mtp_logits`
  // are empty when every sequence of the call set tokens_only and the backend skipped them.
  std::vector<int32_t> argmax;
  std::vector<int32_t> mtp_argmax;
  // Backends with SamplesOnDevice(): one per sequence, its `sample`'s token; -1 where it asked
  // none or its last row has no usable logit (all NaN or -inf). Empty on other backends.
  std::vector<int32_t> sampled;

  std::span<const float> Row(int r) const {
    return {logits.data() + static_cast<size_t>(r) * vocab_size, static_cast<size_t>(vocab_size)};
  }
  // The logits after the last token of sequence `i`.
  std::span<const float> LastRow(int i) const { return Row(row_offset[i + 1] - 1); }
  int32_t MtpArgmax(int r, int head) const { return mtp_argmax[static_cast<size_t>(r) * num_mtp_heads + head - 1]; }
  // Logits of MTP head `head` (1-based) at row `r`.
  std::span<const float> MtpRow(int r, int head) const {
    return {mtp_logits.data() + (static_cast<size_t>(r) * num_mtp_heads + head - 1) * vocab_size,
            static_cast<size_t>(vocab_size)};
  }
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;
  virtual const StateLayout& state_layout() const = 0;
  virtual Precision precision() const { return Precision::kExact; }

  // Allocates `num_slots` zeroed state slots, replacing any earlier pool.
  virtual absl::Status AllocateSlots(int num_slots) = 0;
  virtual int num_slots() const = 0;

  // Returns the slot to the empty state (the state before any token).
  virtual absl::Status ResetSlot(int slot) = 0;

  // Runs each sequence's tokens from its slot's state and advances the state. Sequences
  // must name distinct slots. `out` is resized and overwritten.
  virtual absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) = 0;

  // Applies deferred state updates: each slot advances by a prefix of the tokens of its last
  // Forward() with defer_commit, as one rank-`num_tokens` update of the committed state. A
  // backend may carry the update out lazily (the CUDA backend folds it into the slot's next
  // verify); every later use of the slot, ReadSlot included, sees the advanced state.
  // FAILED_PRECONDITION if the slot has no deferred forward or it had fewer tokens.
  // Backends without speculation support reject mtp_heads/defer_commit inputs and Commit().
  virtual absl::Status Commit(std::span<const CommitInput> commits) {
    (void)commits;
    return absl::UnimplementedError(std::string(name()) + " backend does not support speculative commit");
  }
  // True when Forward() honours mtp_heads and defer_commit and Commit() works.
  virtual bool SupportsSpeculation() const { return false; }
  // True when Forward() honours SequenceInput::sample (other backends reject it).
  virtual bool SamplesOnDevice() const { return false; }
  // Multi-token-prediction heads beyond head 0 that the loaded model has (0: none).
  virtual int num_mtp_heads() const { return 0; }
  // A fixed estimate of the cost of a verify pass of `tokens` per sequence relative to a
  // one-token step, for decisions that must not depend on timings (seeded sampling).
  virtual double VerifyCostRatio(int tokens) const { return static_cast<double>(tokens); }

  // Snapshots: copies of a slot's state in the backend's own dtype and layout, kept in buffers
  // of two tiers (SnapshotTier) for the state store (prefix cache, sessions, preemption).
  // Copies are asynchronous: each is ordered after every earlier call that wrote its source and
  // before every later call that reads or writes its destination, so the caller never waits
  // for one. A slot's recorded commit (Commit) is in the state that SaveSnapshot copies;
  // RestoreSnapshot drops any deferred forward of the slot.
  // Bytes of one snapshot (what one buffer of either tier holds).
  virtual int64_t snapshot_bytes() const = 0;
  // Replaces all snapshot buffers by `device` buffers of kDevice and `host` of kHost;
  // RESOURCE_EXHAUSTED when the memory is not there (the earlier buffers are gone either way).
  virtual absl::Status AllocateSnapshots(int device, int host) = 0;
  virtual absl::Status SaveSnapshot(int slot, SnapshotRef dst) = 0;
  virtual absl::Status RestoreSnapshot(SnapshotRef src, int slot) = 0;
  // Tier moves (spill to host, promotion back): off the forward pass's way where the device
  // has a second copy engine.
  virtual absl::Status CopySnapshot(SnapshotRef src, SnapshotRef dst) = 0;
  // Device memory still free for snapshot buffers after weights, slots and working memory
  // (0 where snapshots of kDevice live in host memory, as on the CPU backend).
  virtual int64_t FreeDeviceBytes() const { return 0; }

  // Start-up warm-up (engine/warm_up.h): whether running each step shape once before serving
  // pays (tuned GEMM choices, captured graphs), and whether shapes seen for the first time may
  // be tuned (timed) — on during warm-up, off after it, so that a live step never stalls on it.
  virtual bool WantsWarmUp() const { return false; }
  virtual void SetShapeTuning(bool allowed) { (void)allowed; }
  // The choices tuning has left open so far and not settled: a kernel's time alone is not its
  // cost in a pass (a neighbour overlaps it or not, the cache holds what it reads or not), so
  // where candidates timed alone within a few percent, warm-up runs passes with each.
  virtual std::vector<OpenChoice> OpenChoices() const { return {}; }
  // Runs candidate `candidate` of open choice `id` from the next Forward on; with
  // `pass_seconds` (one per candidate: what a pass took with each) also settles the choice, and
  // may close others that the candidate taken makes moot.
  virtual absl::Status TakeCandidate(int id, int candidate, std::span<const double> pass_seconds) {
    (void)candidate;
    (void)pass_seconds;
    return absl::NotFoundError("no open choice " + std::to_string(id));
  }

  // Host copies of a slot's state in StateLayout's fp32 format, for tests and tools.
  virtual absl::Status ReadSlot(int slot, std::span<float> out) const = 0;
  virtual absl::Status WriteSlot(int slot, std::span<const float> in) = 0;
};

}  // namespace xlserve
