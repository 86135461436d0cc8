#include "engine/batch_decoder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <span>
#include <string>

#include "engine/sampling/distribution.h"
#include "engine/sampling/sampler.h"
#include "engine/speculative/draft_acceptance.h"
#include "engine/speculative/draft_length_policy.h"
#include "base/status_macros.h"
#include "spdlog/spdlog.h"

namespace xlserve {
namespace {

// Weight of each judged draft in the running acceptance per draft position (pooled over the
// decoder's greedy sequences): the last ~10 dominate, so the estimate follows text that turns
// easy or hard to draft. A step's n judgments at a position move it toward their mean by
// 1 - (1 - kKeptWeight)^n, as far as n single judgments would but in no order: judged one after
// another, the batch's last ~10 sequences set it, and at batch 32 a step that ended on a few
// misses took the expected gain below the margin for good (7B shape, replayed acceptance, H200:
// `auto` 0.98x of plain decoding where `on` made 1.30x; pooled, 1.35x).
constexpr double kKeptWeight = 0.1;
// Greedy `auto` leaves speculation for good unless its best draft length is expected to yield this
// much more than plain steps: the expectation prices passes at their warm-up cost, and on the H200 a
// batch's makespan (its slowest sequence) and mixed-shape steps took back more than 8% of a
// predicted gain (shipped model, batch 8: 1.08x predicted, 0.56x measured with `on`).
constexpr double kSpeculationMargin = 1.10;
constexpr double kKeptPrior = 0.7;
// Judged first drafts (pooled, since the decoder started) before the long-run acceptance may
// end speculation for good. On one judgment the running estimate decided: the shipped model at
// batch 1 (held-out code, H200) made 1.13x of plain with `on`, but `auto` left after its first
// draft was rejected (kept 0.7 -> 0.63 put k = 3 just under the margin) and made 0.98x. After
// 32, one judgment moves the estimate by 0.03 and an acceptance near 0.7 has a standard error
// of 0.08; gathering them costs at most 32 verify steps once per decoder, 32 / n at batch n.
constexpr int64_t kEvidenceJudgments = 32;
constexpr double kCycleOutlier = 25;
// Steps a plain verdict holds before newcomers measure acceptance anew; doubled each time the
// measuring ends in the same verdict, up to kPlainVerdictMaxSteps. At 4,096 steps for good, the
// shipped model served at concurrency 32 on an H100 (0.14 ms passes) measured anew every 0.6 s,
// and the newcomers' passes beside plain ones, with heads and no graph to replay, made `auto`
// 0.92-0.97x of `off` while it drafted 0.1-0.2 tokens a pass.
constexpr int64_t kPlainVerdictSteps = 4096;
constexpr int64_t kPlainVerdictMaxSteps = 16 * kPlainVerdictSteps;

// The draft length in [1, most] that yields the most expected tokens per second for each of
// the batch's sequences when draft j is kept with probability kept(j) once drafts 0..j-1 were,
// and that rate, with a verify of L tokens a sequence priced at price(L); k = 0 when no verify
// of those lengths is priced. kept and price are callables, so the estimates a step weighs need
// no vectors of their own.
struct BestLength {
  int k = 0;
  double rate = 0;
};
template <typename Kept, typename Price>
BestLength Best(int most, const Kept& kept, const Price& price) {
  BestLength best;
  for (int k = 1; k <= most; ++k) {
    const std::optional<double> seconds = price(1 + k);
    if (!seconds) continue;
    double tokens = 1, chain = 1;
    for (int j = 0; j < k; ++j) tokens += (chain *= kept(j));
    if (tokens / *seconds > best.rate) best = {k, tokens / *seconds};
  }
  return best;
}

}  // namespace

struct BatchDecoder::Sequence {
  Sequence(int slot_in, const GenerationRequest& request_in, Sampler sampler_in,
           DraftLengthPolicy policy_in, int max_draft_in, BatchDecoder::TokenCallback on_token_in)
      : slot(slot_in),
        request(request_in),
        sampler(std::move(sampler_in)),
        policy(std::move(policy_in)),
        max_draft(max_draft_in),
        on_token(std::move(on_token_in)) {}

  int slot;
  GenerationRequest request;
  Sampler sampler;
  DraftLengthPolicy policy;
  int max_draft;  // 0: plain decoding
  BatchDecoder::TokenCallback on_token;
  GenerationResult result;
  bool finished = false;
  bool suspended = false;
  int32_t pending = -1;  // emitted, not yet fed to the model
  bool ended_on_draft = false;  // finished on an accepted draft: commit stops short of it
  std::vector<int32_t> drafts;
  std::vector<std::vector<float>> q;  // draft distributions (sampling only)
  std::vector<int32_t> inputs;        // this step's tokens
  int k = 0;                          // this step's draft length
  // Plain greedy without logits for the callback: decoded from the backend's argmax alone.
  bool argmax_only = sampler.plain_greedy() && !request.token_logits;
  // Plain decoding that is not plain greedy, without logits for the callback, on a backend
  // that samples on the device: decode steps take the backend's sampled token (Add sets it).
  bool device_sample = false;
  DeviceSampling sampling;  // this step's request to the backend when device_sample

  // Whether the step's logits go unread (SequenceInput::tokens_only).
  bool tokens_only() const { return argmax_only || device_sample; }

  // The token after row `row` of `out`.
  absl::StatusOr<int32_t> Next(const ForwardOutput& out, int row) {
    if (!argmax_only) {
      if (out.logits.empty()) return absl::InternalError("decoder: the backend returned no logits to sample from");
      return sampler.Sample(out.Row(row), history());
    }
    if (out.argmax[row] < 0) return absl::InvalidArgumentError("decoder: no usable logit in a row (all NaN or -inf)");
    return out.argmax[row];
  }
  // The token the backend sampled for sequence `i` of `out` (device_sample); the stream then
  // moves past the draw the device took, where Sample() would have left it.
  absl::StatusOr<int32_t> DeviceSampled(const ForwardOutput& out, size_t i) {
    if (i >= out.sampled.size()) return absl::InternalError("decoder: the backend returned no sampled token");
    if (out.sampled[i] < 0) return absl::InvalidArgumentError("decoder: no usable logit in a row (all NaN or -inf)");
    if (!sampler.greedy()) sampler.SkipDraws(1);
    return out.sampled[i];
  }
  // The logits row the token callback sees (empty when the backend skipped the logits).
  std::span<const float> CallbackLogits(const ForwardOutput& out, int row) const {
    if (tokens_only() && out.logits.empty()) return {};
    return out.Row(row);
  }

  TokenHistory history() const { return {request.prompt_ids, result.tokens}; }
  int remaining() const { return request.max_new_tokens - static_cast<int>(result.tokens.size()); }

  // Records `token`; returns true once the sequence is finished (stop token or length).
  bool Emit(int32_t token, std::span<const float> logits) {
    result.tokens.push_back(token);
    if (on_token) on_token(token, logits);
    const auto& stops = request.stop_token_ids;
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
      result.finish_reason = FinishReason::kStop;
      finished = true;
    } else if (remaining() <= 0) {
      result.finish_reason = FinishReason::kLength;
      finished = true;
    }
    return finished;
  }
};

BatchDecoder::BatchDecoder(Backend* backend) : backend_(backend), plain_verdict_steps_(kPlainVerdictSteps) {}
BatchDecoder::~BatchDecoder() = default;

bool BatchDecoder::SpeculationEnabled(const GenerationRequest& request) const {
  return request.speculation != SpeculationMode::kOff && request.num_draft > 0 &&
         backend_->num_mtp_heads() > 0 && backend_->SupportsSpeculation();
}

bool BatchDecoder::JoinsPlain(const GenerationRequest& request) const {
  if (request.speculation != SpeculationMode::kAuto || request.sampling.temperature != 0.0f) return false;
  int decoding = 0;
  for (const auto& [id, seq] : sequences_) decoding += seq->finished || seq->suspended ? 0 : 1;
  if (plain_from_batch_ && decoding + 1 >= *plain_from_batch_) return true;
  const int most = std::min(request.num_draft, backend_->num_mtp_heads());
  return most > 0 && LeavesAtOnce(decoding + 1, most);
}

absl::StatusOr<int> BatchDecoder::Add(int slot, const GenerationRequest& request,
                                      const ForwardOutput& prefill, int index,
                                      TokenCallback on_token) {
  ASSIGN_OR_RETURN(Sampler sampler, Sampler::Create(request.sampling));
  const bool speculative = SpeculationEnabled(request);
  const int max_draft = speculative ? std::min(request.num_draft, backend_->num_mtp_heads()) : 0;
  if (static_cast<int>(kept_.size()) < max_draft) {
    kept_.resize(max_draft, kKeptPrior);
    judged_.resize(max_draft, 0);
    judged_kept_.resize(max_draft, 0);
    judged_total_.resize(max_draft, 0);
    kept_total_.resize(max_draft, 0);
  }
  if (speculative && acceptance_source_ && !sampler.greedy()) {
    return absl::InvalidArgumentError("replayed acceptance decodes greedy requests only (temperature 0)");
  }
  if (speculative && prefill.num_mtp_heads == 0) {
    return absl::FailedPreconditionError("speculative sequence prefilled without its MTP heads");
  }
  // Seeded sampling must not depend on timings: its draws follow the draft lengths.
  DraftLengthPolicy policy =
      sampler.greedy() ? DraftLengthPolicy(max_draft)
                       : DraftLengthPolicy(max_draft, [backend = backend_](int k) {
                           return backend->VerifyCostRatio(1 + k);
                         });
  auto seq = std::make_unique<Sequence>(slot, request, std::move(sampler), std::move(policy), max_draft,
                                        std::move(on_token));
  seq->result.speculative = speculative;
  // Speculative sequences judge drafts against whole distributions, and token_logits needs the
  // rows on the host anyway: both keep sampling there.
  seq->device_sample =
      !speculative && !seq->argmax_only && !request.token_logits && backend_->SamplesOnDevice();
  const int last_row = prefill.row_offset[index + 1] - 1;
  if (request.max_new_tokens == 0) {
    seq->finished = true;
  } else {
    // A last prefill chunk prepared by PrepareLastPrefill may come back with the token the
    // backend sampled instead of the logits.
    const bool sampled_on_device = seq->device_sample && prefill.logits.empty();
    ASSIGN_OR_RETURN(seq->pending,
                     sampled_on_device ? seq->DeviceSampled(prefill, index) : seq->Next(prefill, last_row));
    if (!seq->Emit(seq->pending, seq->CallbackLogits(prefill, last_row)) && speculative) {
      RETURN_IF_ERROR(Draft(*seq, prefill, last_row));
    }
  }
  const int id = next_id_++;
  sequences_[id] = std::move(seq);
  last_complete_.reset();
  return id;
}

absl::Status BatchDecoder::Draft(Sequence& seq, const ForwardOutput& out, int row) {
  // Greedy takes each head's argmax; sampling draws from the head's processed distribution q,
  // kept for judging the draft later.
  seq.drafts.clear();
  seq.q.resize(seq.max_draft);
  for (int head = 1; head <= seq.max_draft; ++head) {
    if (seq.sampler.greedy()) {
      seq.drafts.push_back(out.MtpArgmax(row, head));
      continue;
    }
    const std::span<const float> logits = out.MtpRow(row, head);
    RETURN_IF_ERROR(seq.sampler.Probabilities(logits, seq.history(), &seq.q[head - 1]));
    seq.drafts.push_back(SampleFromDistribution(seq.q[head - 1], seq.sampler.NextUniform()));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> BatchDecoder::Accept(Sequence& seq, const ForwardOutput& out, int first_row, int k) {
  // Row j predicts the token after input j: draft j+1 is judged against row j; after the last
  // kept draft, row `accepted` gives one more token (the bonus, or the replacement drawn at
  // the first rejection).
  std::vector<float>& p = target_probs_;
  std::optional<int> replayed;
  if (acceptance_source_ && k > 0) {
    ASSIGN_OR_RETURN(replayed, acceptance_source_(k));
    if (*replayed < 0 || *replayed > k) {
      return absl::InternalError("decoder: the acceptance source kept " + std::to_string(*replayed) + " of " +
                                 std::to_string(k) + " drafts");
    }
  }
  int accepted = 0;
  int32_t next = -1;
  for (int j = 0; j <= k; ++j) {
    if (j == k) {
      ASSIGN_OR_RETURN(next, seq.Next(out, first_row + j));
      break;
    }
    const int32_t draft = seq.inputs[j + 1];
    if (seq.sampler.greedy()) {
      ASSIGN_OR_RETURN(const int32_t target, seq.Next(out, first_row + j));
      ++judged_[j];
      if (replayed ? j == *replayed : target != draft) {
        next = target;
        break;
      }
    } else {
      RETURN_IF_ERROR(seq.sampler.Probabilities(out.Row(first_row + j), seq.history(), &p));
      const double u = seq.sampler.NextUniform();
      const double u_resample = seq.sampler.NextUniform();
      ASSIGN_OR_RETURN(const DraftVerdict verdict, JudgeSampledDraft(p, seq.q[j], draft, u, u_resample));
      if (!verdict.accepted) {
        next = verdict.replacement;
        break;
      }
    }
    ++accepted;
    if (seq.sampler.greedy()) ++judged_kept_[j];
    if (seq.Emit(draft, seq.CallbackLogits(out, first_row + j))) {
      seq.ended_on_draft = true;
      return accepted;
    }
  }
  if (!seq.Emit(next, seq.CallbackLogits(out, first_row + accepted))) seq.pending = next;
  return accepted;
}


bool BatchDecoder::SharedEligible(const Sequence& s) {
  return s.max_draft > 0 && s.sampler.greedy() && s.request.speculation == SpeculationMode::kAuto;
}

std::optional<int> BatchDecoder::SharedDraftLength(const std::vector<Sequence*>& active) const {
  if (costs_.empty()) return std::nullopt;
  const int batch = static_cast<int>(active.size());
  if (!costs_.Plain(batch)) return std::nullopt;
  int most = 0;  // the longest draft every sequence of the group makes
  for (const Sequence* s : active) {
    if (SharedEligible(*s)) most = most == 0 ? s->max_draft : std::min(most, s->max_draft);
  }
  if (most == 0) return std::nullopt;
  const BestLength chosen = Best(most, [this](int j) { return kept_[j]; }, VerifyPricer(batch));
  if (chosen.k == 0) return std::nullopt;
  return LeavesAtOnce(batch, most) ? 0 : chosen.k;
}

void BatchDecoder::LogPlainVerdict(int batch) const {
  std::string kept, priced;
  for (size_t j = 0; j < judged_total_.size(); ++j) {
    kept += fmt::format("{}{}/{}", j ? ", " : "", kept_total_[j], judged_total_[j]);
  }
  for (int tokens = 2; tokens <= static_cast<int>(judged_total_.size()) + 1; ++tokens) {
    if (const std::optional<double> s = VerifyPrice(batch, tokens)) {
      priced += fmt::format("{}L={} {:.3f} ms", priced.empty() ? "" : ", ", tokens, *s * 1e3);
    }
  }
  spdlog::info("speculation auto: batch {} decodes plainly from now on; drafts kept per position {}; "
               "verify priced at {} against a plain step's {:.3f} ms (each with {:.3f} ms of host work)",
               batch, kept, priced, PlainPrice(batch).value_or(0) * 1e3, HostSeconds(batch) * 1e3);
}

double BatchDecoder::HostSeconds(int batch) const {
  const std::optional<int> bucket = costs_.Bucket(batch);
  if (!bucket) return 0;
  auto it = host_.find(*bucket);
  return it == host_.end() ? 0 : it->second.Median();
}

std::optional<double> BatchDecoder::Priced(std::optional<double> pass, int batch) const {
  if (!pass) return std::nullopt;
  // A pass faster than warm-up's makes the host work negative; half the pass bounds it below.
  return std::max(*pass + HostSeconds(batch), 0.5 * *pass);
}

std::optional<double> BatchDecoder::PlainPrice(int batch) const { return Priced(costs_.Plain(batch), batch); }

std::optional<double> BatchDecoder::VerifyPrice(int batch, int tokens) const {
  return Priced(costs_.Verify(batch, tokens), batch);
}

bool BatchDecoder::LeavesAtOnce(int batch, int most) const {
  const std::optional<double> plain = PlainPrice(batch);
  if (!plain) return false;
  // Tokens per second per sequence, as Best counts them, that speculation must beat.
  const double needed = kSpeculationMargin / *plain;
  const BestLength perfect = Best(most, [](int) { return 1.0; }, VerifyPricer(batch));
  if (perfect.k > 0 && perfect.rate < needed) return true;
  const int judged = static_cast<int>(judged_total_.size());
  if (judged == 0 || judged_total_[0] < kEvidenceJudgments) return false;
  // The prior where a position was never judged.
  const auto long_run = [&](int j) {
    return j < judged && judged_total_[j] > 0 ? static_cast<double>(kept_total_[j]) / judged_total_[j] : kKeptPrior;
  };
  return Best(most, long_run, VerifyPricer(batch)).rate < needed;
}

int BatchDecoder::PlanStep(std::vector<SequenceInput>* batch) {
  planned_.clear();
  planned_first_ = static_cast<int>(batch->size());
  std::vector<Sequence*> active;
  for (auto& [id, seq] : sequences_) {
    if (!seq->finished && !seq->suspended) active.push_back(seq.get());
  }
  const std::optional<int> shared = SharedDraftLength(active);
  planned_uniform_k_ = shared.value_or(0);
  if (plain_from_batch_ && ++steps_since_plain_verdict_ >= plain_verdict_steps_) {
    // Measured anew: the old workload's judgments would otherwise end a newcomer's speculation
    // at its first step, whatever its own text.
    plain_from_batch_.reset();
    remeasuring_ = true;
    std::fill(judged_total_.begin(), judged_total_.end(), 0);
    std::fill(kept_total_.begin(), kept_total_.end(), 0);
  }
  if (shared == 0) {
    const int batch = static_cast<int>(active.size());
    if (!plain_from_batch_ || batch < *plain_from_batch_) LogPlainVerdict(batch);
    plain_from_batch_ = std::min(plain_from_batch_.value_or(batch), batch);
    steps_since_plain_verdict_ = 0;
    if (remeasuring_) plain_verdict_steps_ = std::min(2 * plain_verdict_steps_, kPlainVerdictMaxSteps);
    remeasuring_ = false;
  } else if (shared && !judged_total_.empty() && judged_total_[0] >= kEvidenceJudgments) {
    // Drafting on enough evidence that it pays: the workload is one speculation suits.
    plain_verdict_steps_ = kPlainVerdictSteps;
    remeasuring_ = false;
  }
  for (Sequence* seq : active) {
    Sequence& s = *seq;
    s.k = 0;
    if (shared && SharedEligible(s)) {
      if (*shared == 0) {
        // For good: the heads' states stop following the tokens from this step on.
        s.max_draft = 0;
        s.result.heads_dropped = true;
      } else {
        // Every sequence of the group drafts the same length, past max_new_tokens too (Accept
        // stops at the end), so the step keeps one shape.
        s.k = std::min(*shared, static_cast<int>(s.drafts.size()));
      }
    } else if (s.max_draft > 0) {
      // `on` drafts its whole length to the end, past max_new_tokens too (Accept stops there):
      // sequences near their ends drafting less made the batch's verify one of mixed lengths,
      // which no graph replays (shipped model, H100, batch 32: 0.81-0.88 ms eager steps where
      // the replay takes 0.42). `auto`'s own lengths vary by sequence anyway; it never drafts
      // past the end, as a step emits at most k + 1 tokens.
      s.k = s.request.speculation == SpeculationMode::kAuto ? std::min(s.policy.Next(), s.remaining() - 1)
                                                             : s.max_draft;
      s.k = std::min(s.k, static_cast<int>(s.drafts.size()));
    }
    s.inputs.assign(1, s.pending);
    s.inputs.insert(s.inputs.end(), s.drafts.begin(), s.drafts.begin() + s.k);
    SequenceInput in;
    in.slot = s.slot;
    in.tokens = s.inputs;
    in.all_logits = s.max_draft > 0;
    in.mtp_heads = s.max_draft > 0;
    in.defer_commit = s.max_draft > 0;
    in.tokens_only = s.tokens_only();
    if (s.device_sample) {
      s.sampling = DeviceSampling{s.sampler.params(), s.history(), s.sampler.draws_taken()};
      in.sample = &s.sampling;
    }
    if (s.k != planned_uniform_k_ || !SharedEligible(s)) planned_uniform_k_ = 0;
    batch->push_back(in);
    planned_.push_back(&s);
  }
  return static_cast<int>(planned_.size());
}

absl::Status BatchDecoder::CompleteStep(const ForwardOutput& out, double seconds) {
  const auto now = clock_();
  const bool alone = planned_first_ == 0 && out.row_offset.size() == planned_.size() + 1;
  const int batch = static_cast<int>(planned_.size());
  const std::optional<int> bucket = costs_.Bucket(batch);
  if (alone && last_complete_ && batch > 0 && bucket) {
    // The pass as warm-up timed it, where this step has a timed shape: a verify shared by the
    // whole batch, or plain steps without heads.
    std::optional<double> pass;
    if (planned_uniform_k_ > 0) {
      pass = costs_.Verify(batch, 1 + planned_uniform_k_);
    } else if (std::all_of(planned_.begin(), planned_.end(), [](const Sequence* s) { return s->max_draft == 0; })) {
      pass = costs_.Plain(batch);
    }
    const double cycle = std::chrono::duration<double>(now - *last_complete_).count();
    // Host work can take several times a small model's pass; a cycle longer still waited for
    // work, not for this step.
    if (pass && cycle < kCycleOutlier * *pass) host_[*bucket].Add(cycle - *pass);
  }
  last_complete_ = now;
  std::vector<CommitInput> commits;
  std::vector<int> accepted(planned_.size(), 0);
  for (size_t j = 0; j < planned_.size(); ++j) {
    Sequence& s = *planned_[j];
    const int i = planned_first_ + static_cast<int>(j);
    ++s.result.steps;
    if (s.max_draft == 0) {
      const int row = out.row_offset[i + 1] - 1;
      ASSIGN_OR_RETURN(const int32_t next, s.device_sample ? s.DeviceSampled(out, i) : s.Next(out, row));
      if (!s.Emit(next, s.CallbackLogits(out, row))) s.pending = next;
      continue;
    }
    const int first_row = out.row_offset[i];
    // Drafts past max_new_tokens are never judged, so they are not counted as drafted.
    const int judgeable = std::min(s.k, s.remaining());
    ASSIGN_OR_RETURN(accepted[j], Accept(s, out, first_row, s.k));
    s.result.drafted_tokens += judgeable;
    s.result.accepted_drafts += accepted[j];
    if (s.k > 0 && !s.ended_on_draft) s.result.acceptance.Record(s.k, accepted[j]);
    // The state takes the pending token and the kept drafts, except a draft that ended the
    // sequence: like every last token it stays out (pending_token), so a session resumes right.
    commits.push_back({s.slot, accepted[j] + (s.ended_on_draft ? 0 : 1)});
    if (!s.finished) RETURN_IF_ERROR(Draft(s, out, first_row + accepted[j]));
  }
  if (!commits.empty()) RETURN_IF_ERROR(backend_->Commit(commits));
  for (size_t j = 0; j < kept_.size(); ++j) {
    if (static_cast<int>(j) >= planned_uniform_k_ && planned_uniform_k_ > 0) {
      // A position the shared length did not draft is judged never again while that length
      // stays best, and the estimate that made it so would stand for good (a stretch of text
      // where second drafts failed kept a batch at one draft a step; H100, shipped model, batch
      // 1: 1.32-1.33x of plain where `on` made 1.46-1.49x). It returns toward the prior as if the prior
      // were judged once a step, so the length is tried again.
      kept_[j] += kKeptWeight * (kKeptPrior - kept_[j]);
    }
    if (judged_[j] == 0) continue;
    const double weight = 1 - std::pow(1 - kKeptWeight, judged_[j]);
    kept_[j] += weight * (static_cast<double>(judged_kept_[j]) / judged_[j] - kept_[j]);
    judged_total_[j] += judged_[j];
    kept_total_[j] += judged_kept_[j];
    judged_[j] = judged_kept_[j] = 0;
  }
  for (size_t j = 0; j < planned_.size(); ++j) {
    if (planned_[j]->max_draft > 0) planned_[j]->policy.Record(planned_[j]->k, accepted[j], seconds);
  }
  planned_.clear();
  return absl::OkStatus();
}

absl::Status BatchDecoder::Step() {
  std::vector<SequenceInput> batch;
  if (PlanStep(&batch) == 0) return absl::OkStatus();
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(backend_->Forward(batch, &step_output_));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return CompleteStep(step_output_, seconds);
}

void BatchDecoder::PrepareLastPrefill(const GenerationRequest& request, SequenceInput* in,
                                      DeviceSampling* sampling) const {
  if (request.token_logits) return;
  const absl::StatusOr<Sampler> sampler = Sampler::Create(request.sampling);
  if (!sampler.ok()) return;  // Add reports it
  if (sampler->plain_greedy()) {
    in->tokens_only = true;  // the argmax (and the heads' argmax for the drafts) suffices
  } else if (!SpeculationEnabled(request) && backend_->SamplesOnDevice()) {
    *sampling = DeviceSampling{request.sampling, TokenHistory{request.prompt_ids, {}}, 0};
    in->sample = sampling;
    in->tokens_only = true;
  }
}

bool BatchDecoder::has_unfinished() const {
  for (const auto& [id, seq] : sequences_) {
    if (!seq->finished && !seq->suspended) return true;
  }
  return false;
}

void BatchDecoder::Suspend(int id) { sequences_.at(id)->suspended = true; }

void BatchDecoder::Resume(int id, int slot) {
  Sequence& s = *sequences_.at(id);
  s.suspended = false;
  s.slot = slot;
  last_complete_.reset();
}

bool BatchDecoder::finished(int id) const { return sequences_.at(id)->finished; }

const GenerationResult& BatchDecoder::result(int id) const { return sequences_.at(id)->result; }

int32_t BatchDecoder::pending_token(int id) const {
  const Sequence& s = *sequences_.at(id);
  return s.result.tokens.empty() ? -1 : s.result.tokens.back();
}

GenerationResult BatchDecoder::Remove(int id) {
  auto it = sequences_.find(id);
  GenerationResult result = std::move(it->second->result);
  sequences_.erase(it);
  return result;
}

}  // namespace xlserve
