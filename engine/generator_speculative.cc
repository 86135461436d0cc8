// The self-speculative decoding loop of Generator (DESIGN §4).
//
// Each step feeds the pending token y plus drafts d_1..d_k in one deferred pass. Row j of the
// output predicts the token after input j: draft d_{j+1} is judged against row j (greedy:
// equal to its argmax; sampled: speculative sampling). With a drafts kept, the tokens
// emitted are d_1..d_a and then one more from row a (the bonus, or the replacement drawn at
// the first rejection); the state advances by y, d_1..d_a in one commit, and the MTP heads'
// outputs at row a draft the next step.
#include <chrono>

#include "engine/generator.h"
#include "engine/internal/token_emitter.h"
#include "engine/sampling/distribution.h"
#include "engine/sampling/logprobs.h"
#include "engine/speculative/draft_acceptance.h"
#include "engine/speculative/draft_length_policy.h"
#include "engine/util/status_macros.h"

namespace xlserve {
namespace {

// Drafts for the next step from the MTP heads' logits at `row`: greedy takes each head's
// argmax, sampling draws from the head's processed distribution q (kept for the judge).
absl::Status Draft(const ForwardOutput& out, int row, int k, Sampler& sampler,
                   const TokenHistory& history, std::vector<int32_t>* drafts,
                   std::vector<std::vector<float>>* q) {
  drafts->clear();
  q->resize(k);
  for (int head = 1; head <= k; ++head) {
    const std::span<const float> logits = out.MtpRow(row, head);
    if (sampler.greedy()) {
      drafts->push_back(Argmax(logits));
      continue;
    }
    RETURN_IF_ERROR(sampler.Probabilities(logits, history, &(*q)[head - 1]));
    drafts->push_back(SampleFromDistribution((*q)[head - 1], sampler.NextUniform()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Generator::DecodeSpeculative(int slot, const GenerationRequest& request,
                                          Sampler& sampler, const ForwardOutput& prefill,
                                          Emitter& emit, GenerationResult& result) {
  const int max_draft = std::min(request.num_draft, backend_->num_mtp_heads());
  // Seeded sampling must not depend on timings: its draws follow the draft lengths.
  DraftLengthPolicy policy =
      sampler.greedy() ? DraftLengthPolicy(max_draft)
                       : DraftLengthPolicy(max_draft, [this](int k) { return backend_->VerifyCostRatio(1 + k); });
  const std::vector<int32_t>& prompt = request.prompt_ids;
  auto history = [&] { return TokenHistory{prompt, result.tokens}; };

  ASSIGN_OR_RETURN(int32_t pending, sampler.Sample(prefill.LastRow(0), history()));
  if (emit.Emit(pending)) return absl::OkStatus();
  std::vector<int32_t> drafts;
  std::vector<std::vector<float>> q;
  RETURN_IF_ERROR(Draft(prefill, prefill.row_offset[1] - 1, max_draft, sampler, history(), &drafts, &q));

  ForwardOutput out;
  std::vector<float> p;
  std::vector<int32_t> inputs;
  for (;;) {
    int k = request.speculation == SpeculationMode::kAuto ? policy.Next() : max_draft;
    // Never draft past max_new_tokens: a step emits at most k + 1 tokens.
    k = std::min(k, emit.remaining() - 1);
    inputs.assign(1, pending);
    inputs.insert(inputs.end(), drafts.begin(), drafts.begin() + k);

    const auto start = std::chrono::steady_clock::now();
    SequenceInput seq;
    seq.slot = slot;
    seq.tokens = inputs;
    seq.all_logits = true;
    seq.mtp_heads = true;
    seq.defer_commit = true;
    RETURN_IF_ERROR(backend_->Forward(std::span<const SequenceInput>(&seq, 1), &out));
    ++result.steps;
    result.drafted_tokens += k;

    int accepted = 0;
    int32_t next = -1;
    for (int j = 0; j <= k && next < 0 && !emit.finished; ++j) {
      const std::span<const float> row = out.Row(j);
      if (j == k) {  // every draft kept: the bonus token comes from the last row
        ASSIGN_OR_RETURN(next, sampler.Sample(row, history()));
        break;
      }
      const int32_t draft = inputs[j + 1];
      if (sampler.greedy()) {
        ASSIGN_OR_RETURN(const int32_t target, sampler.Sample(row, history()));
        if (target != draft) {
          next = target;
          break;
        }
      } else {
        RETURN_IF_ERROR(sampler.Probabilities(row, history(), &p));
        const double u = sampler.NextUniform();
        const double u_resample = sampler.NextUniform();
        ASSIGN_OR_RETURN(const DraftVerdict verdict, JudgeSampledDraft(p, q[j], draft, u, u_resample));
        if (!verdict.accepted) {
          next = verdict.replacement;
          break;
        }
      }
      ++accepted;
      emit.Emit(draft);
    }
    result.accepted_drafts += accepted;
    const CommitInput commit{slot, accepted + 1};
    RETURN_IF_ERROR(backend_->Commit(std::span<const CommitInput>(&commit, 1)));
    policy.Record(k, accepted, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (emit.finished || emit.Emit(next)) return absl::OkStatus();

    pending = next;
    RETURN_IF_ERROR(Draft(out, accepted, max_draft, sampler, history(), &drafts, &q));
  }
}

}  // namespace xlserve
