// BatchDecoder: decode steps for many sequences at once, each plain or self-speculative.
//
// Sequences join after their prompt has been prefilled (Add) and leave when finished or
// dropped (Remove); every Step() runs one backend pass over all unfinished sequences. A
// speculative sequence feeds its pending token plus k drafts (k chosen per sequence and per
// step), keeps the accepted prefix and commits its state once (DESIGN §4); a plain sequence
// feeds one token. Both kinds mix freely in one pass, which is what continuous batching needs.
// Not thread-safe: one engine thread drives it.
#pragma once

#include <cstdint>
#include <functional>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/generator.h"
#include "engine/speculative/host_time.h"
#include "engine/speculative/step_costs.h"

namespace xlserve {

class BatchDecoder {
 public:
  // Sees each generated id with the raw logits row it was chosen from (the logprobs source;
  // empty when the request did not ask for token_logits and the backend skipped the row).
  using TokenCallback = std::function<void(int32_t token, std::span<const float> logits)>;
  // For a verify of `drafts` drafts, how many to keep (0..drafts) whatever the model says.
  using AcceptanceSource = std::function<absl::StatusOr<int>(int drafts)>;

  // `backend` must outlive the decoder.
  explicit BatchDecoder(Backend* backend);
  ~BatchDecoder();

  // Adds a sequence whose prompt is already prefilled into `slot`. `prefill` is the output of
  // the last prefill pass and `index` the sequence's position in it (its last row gives the
  // first token; with speculation, its MTP rows give the first drafts). The request must be
  // validated; speculation runs only when the backend and model support it (see
  // SpeculationEnabled). `on_token` sees each generated id. Returns the sequence's id; the
  // sequence may already be finished (max_new_tokens 1, or a stop token first).
  absl::StatusOr<int> Add(int slot, const GenerationRequest& request, const ForwardOutput& prefill,
                          int index, TokenCallback on_token = {});

  // One decode pass over every unfinished sequence: PlanStep, Forward, CompleteStep.
  absl::Status Step();

  // A step in two halves, for callers that put other work into the same forward pass:
  // PlanStep appends one input per unfinished sequence to `batch` (from index `first` =
  // batch->size() on; the inputs' token spans stay valid until CompleteStep), and returns how
  // many it added. CompleteStep reads their rows of `out` (the pass over the whole batch),
  // emits the tokens, and commits the speculative sequences' states; `seconds` is the pass's
  // time, which `auto` speculation weighs against acceptance. Nothing else may call Add,
  // Remove, Suspend or Resume in between.
  int PlanStep(std::vector<SequenceInput>* batch);
  absl::Status CompleteStep(const ForwardOutput& out, double seconds);

  // Sets the fields of `in` (the last prefill chunk of a sequence that Add will take with
  // `request`) that let the backend skip the logits: the argmax suffices (greedy, no
  // token_logits), or the backend samples the first token itself (`sampling`, which the
  // caller keeps alive until the Forward returns). Leaves `in` alone otherwise.
  void PrepareLastPrefill(const GenerationRequest& request, SequenceInput* in, DeviceSampling* sampling) const;

  // Step costs measured at warm-up. With them, greedy `auto` sequences share one draft length
  // per step, the one that maximises the batch's expected tokens per second (so the batch keeps
  // one captured graph), and leave speculation for good when plain steps yield more: drafting
  // then costs more than it saves at this batch size (judged on the acceptance since the decoder
  // started, once enough drafts were judged, or at once when keeping every draft could not pay).
  void SetStepCosts(StepCosts costs) { costs_ = std::move(costs); }

  // Replays acceptance instead of judging drafts (bench only: it measures the system cost of
  // speculation at a recorded acceptance, where the heads cannot draft well). Each verify keeps
  // as many drafts as `source` says, emitting them as if they had matched; the trunk's token
  // after them comes next, as after a real rejection. Greedy sequences only: Add refuses the
  // others while a source is set. Set it before adding sequences.
  void SetAcceptanceSource(AcceptanceSource source) { acceptance_source_ = std::move(source); }
  // The clock that times step cycles (steady_clock by default); a test drives its own.
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  void SetClock(Clock clock) { clock_ = std::move(clock); }

  // Whether any sequence that is neither finished nor suspended remains.
  bool has_unfinished() const;
  bool finished(int id) const;
  const GenerationResult& result(int id) const;
  // Forgets sequence `id` (finished or not) and returns its result; its slot is the caller's.
  GenerationResult Remove(int id);
  // Takes sequence `id` out of the decode passes (its slot's state was copied away by the
  // caller, e.g. to host memory); Resume() brings it back on `slot` holding that state.
  void Suspend(int id);
  void Resume(int id, int slot);

  // The token emitted last and not yet fed to the model (its state lacks it), or -1.
  int32_t pending_token(int id) const;

  // Whether a request with these settings would decode speculatively on this backend; the
  // prompt's prefill must then run with SequenceInput::mtp_heads set.
  bool SpeculationEnabled(const GenerationRequest& request) const;

  // Whether a greedy `auto` request joining the sequences decoding now should decode plainly
  // from its prompt on (the caller then turns its speculation off): the shared draft length
  // left speculation at a batch this size or smaller within the last plain_verdict_steps_
  // steps, or the batch it joins would leave at once (LeavesAtOnce). Its heads would only cost
  // (their prefill, and steps whose sequences differ in shape, which replay no graph) for
  // drafts the batch will not take.
  bool JoinsPlain(const GenerationRequest& request) const;

 private:
  struct Sequence;

  absl::Status Draft(Sequence& seq, const ForwardOutput& out, int row);
  // Judges the drafts of `seq` against its rows of `out`, emits the kept tokens and the next
  // one; returns the number of drafts kept.
  absl::StatusOr<int> Accept(Sequence& seq, const ForwardOutput& out, int first_row, int k);
  // The shared draft length of this step's greedy `auto` sequences among `active` (all the
  // step's sequences): k >= 1, 0 for plain steps from now on, or nullopt without step costs.
  // kept_ picks k; going plain takes kEvidenceJudgments long-run judgments that say drafting
  // pays too little, unless keeping every draft could not pay either.
  std::optional<int> SharedDraftLength(const std::vector<Sequence*>& active) const;
  // Whether `batch` sequences drafting up to `most` tokens leave speculation for good now: even
  // keeping every draft could not pay, or the judgments since the decoder started (enough of
  // them) say drafting pays too little.
  bool LeavesAtOnce(int batch, int most) const;
  // One log line when `batch` sequences leave speculation: the evidence and the prices.
  void LogPlainVerdict(int batch) const;
  // A step's price for `batch` sequences: its pass as warm-up timed it plus the host work
  // measured beside the steps of its bucket (host_); nullopt where warm-up did not time it.
  std::optional<double> PlainPrice(int batch) const;
  std::optional<double> VerifyPrice(int batch, int tokens) const;
  auto VerifyPricer(int batch) const {
    return [this, batch](int tokens) { return VerifyPrice(batch, tokens); };
  }
  std::optional<double> Priced(std::optional<double> pass, int batch) const;
  double HostSeconds(int batch) const;
  // Greedy `auto` speculation: the sequences whose draft length the batch shares.
  static bool SharedEligible(const Sequence& s);

  Backend* backend_;
  StepCosts costs_;
  AcceptanceSource acceptance_source_;
  int next_id_ = 0;
  // The sequences of the planned step, in batch order from planned_first_.
  std::vector<Sequence*> planned_;
  int planned_first_ = 0;
  // The planned step's shared draft length when every sequence of it drafted it (else 0), and
  // when the previous step completed: a step's whole cycle less its pass as warm-up timed it is
  // the host work of the cycle, which prices plain and verify steps of its bucket alike (host_,
  // by StepCosts bucket, so bounded by the buckets). Add and Resume forget the previous step:
  // the cycle after them spans a prefill or a restore, and maybe an idle wait.
  int planned_uniform_k_ = 0;
  std::optional<std::chrono::steady_clock::time_point> last_complete_;
  std::map<int, HostTime> host_;
  Clock clock_ = [] { return std::chrono::steady_clock::now(); };
  // Per draft position j, how often a greedy sequence's draft j was kept when drafts 1..j-1
  // were: a running mean over every greedy verify of every sequence (weight kKeptWeight per
  // draft judged, a step's judgments pooled), so a batch learns its acceptance in a step or two.
  // The prior is optimistic, so that speculation gets tried wherever it could pay.
  std::vector<double> kept_;
  std::vector<int> judged_, judged_kept_;  // this step's judgments per position, and the kept ones
  // The same judgments counted since the decoder started or a plain verdict aged: the evidence
  // that a permanent plain verdict needs, where kept_ (which follows the last ~10) only picks
  // each step's length.
  std::vector<int64_t> judged_total_, kept_total_;
  // The smallest batch at which greedy `auto` sequences left speculation, and the steps since;
  // forgotten after plain_verdict_steps_ so that a later workload's acceptance is measured anew.
  // remeasuring_: since the last verdict aged, no step has either reached a verdict or drafted
  // on enough evidence.
  std::optional<int> plain_from_batch_;
  int64_t steps_since_plain_verdict_ = 0;
  int64_t plain_verdict_steps_;
  bool remeasuring_ = false;
  std::map<int, std::unique_ptr<Sequence>> sequences_;
  // Reused across steps so a decode step allocates no vocabulary-sized buffers.
  ForwardOutput step_output_;
  std::vector<float> target_probs_;
};

}  // namespace xlserve
