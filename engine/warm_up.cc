#include "engine/warm_up.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <vector>

#include "base/status_macros.h"

namespace xlserve {
namespace {

// Runs `seqs` sequences of `len` copies of token 0 on slots [0, seqs), as a decode step
// (len 1, plain) or a verify (deferred, heads, every row's logits) followed by a commit of
// all of them.
class Runner {
 public:
  Runner(Backend* backend, std::function<double()> clock) : backend_(backend), clock_(std::move(clock)) {
    if (!clock_) {
      clock_ = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
    }
  }

  // Returns the step's wall time: Forward waits for the step's tokens, so it covers the GPU's.
  absl::StatusOr<double> Step(int seqs, int len, bool verify) {
    zeros_.assign(std::max<size_t>(zeros_.size(), len), 0);
    std::vector<SequenceInput> batch(seqs);
    for (int i = 0; i < seqs; ++i) {
      SequenceInput& in = batch[i];
      in.slot = i;
      in.tokens = std::span<const int32_t>(zeros_.data(), len);
      in.tokens_only = true;
      in.all_logits = verify;
      in.mtp_heads = verify;
      in.defer_commit = verify;
    }
    return Timed(batch);
  }

  // Runs and commits `batch`, returning its wall time.
  absl::StatusOr<double> Timed(std::span<const SequenceInput> batch) {
    const double start = clock_();
    RETURN_IF_ERROR(RunAndCommit(batch));
    return clock_() - start;
  }

  absl::Status RunAndCommit(std::span<const SequenceInput> batch) {
    RETURN_IF_ERROR(backend_->Forward(batch, &out_));
    std::vector<CommitInput> commits;
    for (const SequenceInput& in : batch) {
      if (in.defer_commit) commits.push_back({in.slot, static_cast<int>(in.tokens.size())});
    }
    if (!commits.empty()) RETURN_IF_ERROR(backend_->Commit(commits));
    return absl::OkStatus();
  }

  absl::Status Reset(int seqs) {
    for (int i = 0; i < seqs; ++i) RETURN_IF_ERROR(backend_->ResetSlot(i));
    return absl::OkStatus();
  }

  std::vector<int32_t>& zeros() { return zeros_; }

 private:
  Backend* backend_;
  std::function<double()> clock_;
  std::vector<int32_t> zeros_;
  ForwardOutput out_;
};

// How often each bucket step runs, and how many of the first runs do not count.
struct Repeats {
  int plain, plain_skipped, verify, verify_skipped;
  bool recapture;  // the unfused verify shape again, after fused ones, so that it is captured too
};
// Graph backends: eager, captured, then replays.
constexpr Repeats kCaptureRepeats{5, 2, 6, 3, true};
// Backends without graphs: one run to touch the buffers, then two timed.
constexpr Repeats kTimingRepeats{3, 1, 3, 1, false};
// Graph backends, before any bucket step is captured: each shape once (a verify unfused, then
// fused), so that every buffer of the steps has its largest size.
constexpr Repeats kSizingRepeats{1, 0, 2, 0, false};

// For each power-of-two batch bucket up to max_batch: a plain greedy step and, when verify_len > 0,
// a verify of each length 1..verify_len with and without a recorded commit; the fastest counted
// run is the step's cost. Resets the slots.
absl::Status MeasureBuckets(Runner& run, int max_batch, int verify_len, const Repeats& repeats, StepCosts* costs,
                            const std::function<void(const std::string&)>& say) {
  const bool drafts = verify_len > 0;
  for (int bucket = 1; bucket <= static_cast<int>(std::bit_ceil(unsigned(max_batch))); bucket *= 2) {
    const int seqs = std::min(bucket, max_batch);
    say("warm-up: batch " + std::to_string(seqs) + (drafts ? ", decode and verify" : ", decode"));
    double plain = 1e30;
    for (int i = 0; i < repeats.plain; ++i) {
      ASSIGN_OR_RETURN(const double s, run.Step(seqs, 1, false));
      if (i >= repeats.plain_skipped) plain = std::min(plain, s);
    }
    if (costs) costs->plain[bucket] = plain;
    for (int len = 1; drafts && len <= verify_len; ++len) {
      // Unfused, then fused (a commit recorded by the previous verify).
      RETURN_IF_ERROR(run.Reset(seqs));
      double verify = 1e30;
      for (int i = 0; i < repeats.verify; ++i) {
        ASSIGN_OR_RETURN(const double s, run.Step(seqs, len, true));
        if (i >= repeats.verify_skipped) verify = std::min(verify, s);
      }
      if (costs) costs->verify[{bucket, len}] = verify;
      for (int i = 0; repeats.recapture && i < 2; ++i) {
        RETURN_IF_ERROR(run.Reset(seqs));
        RETURN_IF_ERROR(run.Step(seqs, len, true).status());
      }
    }
    RETURN_IF_ERROR(run.Reset(seqs));
  }
  return absl::OkStatus();
}

// Open choices settled by passes, and how many of them the passes took from timing's pick.
struct Settled {
  int choices = 0, overruled = 0;
};

// Rounds of passes per candidate of an open choice; the first round does not count (a
// candidate's first call may load its kernel), the fastest of the others does.
constexpr int kSettleRounds = 4;

// Settles the choices that running `batch` (from reset slots [0, slots)) left open: it runs
// again with each candidate, the candidates taking turns, and the fastest pass decides.
absl::Status SettleOpenChoices(Backend* backend, Runner& run, std::span<const SequenceInput> batch, int slots,
                               const std::vector<OpenChoice>& before, Settled* settled) {
  const auto listed = [](const std::vector<OpenChoice>& list, int id) {
    return std::any_of(list.begin(), list.end(), [&](const OpenChoice& c) { return c.id == id; });
  };
  for (const OpenChoice& choice : backend->OpenChoices()) {
    // Settling one choice may close another (the backend's to say): only the still open run.
    if (listed(before, choice.id) || !listed(backend->OpenChoices(), choice.id)) continue;
    std::vector<double> seconds(choice.candidates, 1e30);
    for (int round = 0; round < kSettleRounds; ++round) {
      for (int c = 0; c < choice.candidates; ++c) {
        RETURN_IF_ERROR(backend->TakeCandidate(choice.id, c, {}));
        RETURN_IF_ERROR(run.Reset(slots));
        ASSIGN_OR_RETURN(const double s, run.Timed(batch));
        if (round > 0) seconds[c] = std::min(seconds[c], s);
      }
    }
    const int best = static_cast<int>(std::min_element(seconds.begin(), seconds.end()) - seconds.begin());
    RETURN_IF_ERROR(backend->TakeCandidate(choice.id, best, seconds));
    ++settled->choices;
    settled->overruled += best != 0;
  }
  return run.Reset(slots);
}

// Runs `batch` once with shape tuning on (from reset slots [0, slots)), then settles the
// choices it left open. Leaves the slots reset.
absl::Status TuneWith(Backend* backend, Runner& run, std::span<const SequenceInput> batch, int slots,
                      Settled* settled) {
  const std::vector<OpenChoice> before = backend->OpenChoices();
  RETURN_IF_ERROR(run.RunAndCommit(batch));
  return SettleOpenChoices(backend, run, batch, slots, before, settled);
}

}  // namespace

absl::Status WarmUp(Backend* backend, const WarmUpOptions& options,
                    const std::function<void(const std::string&)>& progress, StepCosts* costs) {
  const int max_batch = options.max_batch;
  if (max_batch < 1 || max_batch > backend->num_slots()) {
    return absl::InvalidArgumentError("warm-up: batch " + std::to_string(max_batch) + " does not fit " +
                                      std::to_string(backend->num_slots()) + " slots");
  }
  const bool drafts = options.max_draft > 0 && backend->SupportsSpeculation() && backend->num_mtp_heads() > 0;
  const int verify_len = drafts ? 1 + std::min(options.max_draft, backend->num_mtp_heads()) : 1;
  auto say = [&](const std::string& line) {
    if (progress) progress(line);
  };
  Runner run(backend, options.clock);
  if (!backend->WantsWarmUp()) {
    // Nothing to tune or capture; speculation's `auto` still needs what a plain step and each
    // verify cost, or it cannot tell when running the heads does not pay.
    if (costs == nullptr || !drafts) return absl::OkStatus();
    say("warm-up: step costs");
    return MeasureBuckets(run, max_batch, verify_len, kTimingRepeats, costs, say);
  }
  backend->SetShapeTuning(true);
  Settled settled;

  // The largest passes first: a mixed one (every other sequence verifying, one prefill taking
  // the rest of the budget) and a verify of every sequence with all its logits to the host.
  say("warm-up: largest passes (" + std::to_string(options.max_step_tokens) + " rows)");
  {
    const int others = std::min(max_batch - 1, std::max(0, (options.max_step_tokens - 1) / verify_len));
    const int prefill = std::max(1, options.max_step_tokens - others * verify_len);
    run.zeros().assign(std::max(prefill, verify_len), 0);
    std::vector<SequenceInput> batch(others + 1);
    for (int i = 0; i <= others; ++i) {
      SequenceInput& in = batch[i];
      in.slot = i;
      const bool last = i == others;
      in.tokens = std::span<const int32_t>(run.zeros().data(), last ? prefill : verify_len);
      in.mtp_heads = drafts;
      in.defer_commit = drafts && !last;
      in.all_logits = drafts && !last;
    }
    RETURN_IF_ERROR(TuneWith(backend, run, batch, others + 1, &settled));
    if (drafts) {
      std::vector<SequenceInput> verify(max_batch);
      for (int i = 0; i < max_batch; ++i) {
        verify[i] = SequenceInput{};
        verify[i].slot = i;
        verify[i].tokens = std::span<const int32_t>(run.zeros().data(), verify_len);
        verify[i].all_logits = verify[i].mtp_heads = verify[i].defer_commit = true;
      }
      RETURN_IF_ERROR(TuneWith(backend, run, verify, max_batch, &settled));
      // A batch leaving speculation: the decode step after a verify applies its commit on its own
      // first, on buffers of that path, which would otherwise first grow inside a live step (a
      // device-wide synchronisation, 0.6 ms on the H100).
      RETURN_IF_ERROR(run.RunAndCommit(verify));
      RETURN_IF_ERROR(run.Step(max_batch, 1, false).status());
      RETURN_IF_ERROR(run.Reset(max_batch));
    }
  }

  // A ladder of pass sizes: a mixed pass (decode rows beside a prompt chunk) has any number of
  // rows, and takes the choices timed here for the next size up. The small rungs settle the
  // shapes of steps that are captured as graphs (a verify of one or two sequences, decode at
  // batch 3-4): those steps cannot settle a choice themselves, and their shapes are the same.
  say("warm-up: pass sizes up to " + std::to_string(options.max_step_tokens) + " rows");
  for (int rows : {3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512}) {
    if (rows > options.max_step_tokens) break;
    run.zeros().assign(std::max<size_t>(run.zeros().size(), rows), 0);
    SequenceInput in;
    in.slot = 0;
    in.tokens = std::span<const int32_t>(run.zeros().data(), rows);
    in.tokens_only = true;
    in.mtp_heads = drafts;
    RETURN_IF_ERROR(TuneWith(backend, run, std::span<const SequenceInput>(&in, 1), 1, &settled));
  }
  if (settled.choices > 0) {
    say("warm-up: passes settled " + std::to_string(settled.choices) + " choice(s) that timing left open; " +
        std::to_string(settled.overruled) + " overruled timing's pick");
  }

  if (backend->SamplesOnDevice()) {
    // Sampling's buffers at their largest batch; a long history sizes the penalty list. After
    // the ladder: this step's shapes are a decode step's, whose choices the ladder settles
    // before the step's graph is captured.
    std::vector<int32_t> history(1024, 0);
    DeviceSampling sampling;
    sampling.params.temperature = 1.0f;
    sampling.params.top_k = 50;
    sampling.params.top_p = 0.9f;
    sampling.params.repetition_penalty = 1.1f;
    sampling.history = TokenHistory{history, {}};
    std::vector<SequenceInput> sampled(max_batch);
    for (int i = 0; i < max_batch; ++i) {
      sampled[i] = SequenceInput{};
      sampled[i].slot = i;
      sampled[i].tokens = std::span<const int32_t>(run.zeros().data(), 1);
      sampled[i].tokens_only = true;
      sampled[i].sample = &sampling;
    }
    RETURN_IF_ERROR(run.RunAndCommit(sampled));
    RETURN_IF_ERROR(run.Reset(max_batch));
  }

  // A step that grows a buffer moves it, and that stales every graph captured over the old one.
  // The heads' buffers of small verifies (the heads side by side) grow with each bucket and
  // length, so captured in turn, the smaller steps' graphs were stale when serving began, and
  // each ran eagerly and was captured again inside live steps.
  say("warm-up: every batch bucket's buffers");
  RETURN_IF_ERROR(MeasureBuckets(run, max_batch, drafts ? verify_len : 0, kSizingRepeats, nullptr,
                                 [](const std::string&) {}));
  RETURN_IF_ERROR(MeasureBuckets(run, max_batch, drafts ? verify_len : 0, kCaptureRepeats, costs, say));
  backend->SetShapeTuning(false);
  return absl::OkStatus();
}

}  // namespace xlserve
