#include "engine/testing/fake_backend.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "engine/backend_validation.h"
#include "base/status_macros.h"

namespace xlserve::testing {

FakeBackend::FakeBackend(const FakeBackendOptions& options)
    : choice_states(options.choices.size()), options_(options) {
  layout_.num_layers = 1;
  layout_.num_heads = 1;
  layout_.qk_head_dim = 1;
  layout_.v_head_dim = 4;
}

FakeBackend::State FakeBackend::Advance(State s, int32_t token) {
  uint64_t z = s.hash ^ (static_cast<uint64_t>(token) + 1) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 30)) * 0x94d049bb133111ebull;
  s.hash = z ^ (z >> 31);
  s.seen.push_back(token);
  return s;
}

int32_t FakeBackend::Next(const State& s) const { return static_cast<int32_t>((s.hash >> 20) % options_.vocab_size); }

std::vector<int32_t> FakeBackend::Greedy(std::span<const int32_t> history, int n) const {
  State s;
  for (int32_t t : history) s = Advance(s, t);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(Next(s));
    s = Advance(s, out.back());
  }
  return out;
}

absl::Status FakeBackend::AllocateSlots(int num_slots) {
  if (num_slots < 1) return absl::InvalidArgumentError("need at least one state slot");
  slots_.assign(num_slots, State{});
  deferred_.assign(num_slots, {});
  return absl::OkStatus();
}

absl::Status FakeBackend::ResetSlot(int slot) {
  if (slot < 0 || slot >= num_slots()) return absl::OutOfRangeError("slot out of range");
  slots_[slot] = State{};
  deferred_[slot].clear();
  return absl::OkStatus();
}

absl::Status FakeBackend::Forward(std::span<const SequenceInput> batch, ForwardOutput* out) {
  if (!fail_next_forward.ok()) {
    const absl::Status st = fail_next_forward;
    fail_next_forward = absl::OkStatus();
    return st;
  }
  const int vocab = options_.vocab_size;
  RETURN_IF_ERROR(ValidateForwardBatch(batch, num_slots(), vocab, options_.mtp_heads > 0, true, false));
  const int pass = passes_++;
  std::vector<Row> rows;
  bool tokens_only = true;
  double seconds = options_.pass_seconds;
  for (const SequenceInput& in : batch) {
    rows.push_back({in.slot, static_cast<int>(in.tokens.size()), in.defer_commit, in.mtp_heads, in.tokens_only});
    tokens_only = tokens_only && in.tokens_only;
    if (in.defer_commit) seconds += options_.verify_token_seconds * static_cast<double>(in.tokens.size());
  }
  forwards.push_back(rows);
  int total_rows = 0;
  for (const Row& row : rows) total_rows += row.tokens;
  for (size_t i = 0; i < options_.choices.size(); ++i) {
    if (options_.choices[i].rows != total_rows) continue;
    ChoiceState& c = choice_states[i];
    c.opened = c.opened || tuning;
    if (c.opened) seconds += options_.choices[i].seconds[c.taken];
  }
  if (options_.clock) {
    *options_.clock += seconds;
  } else if (seconds > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  }
  const int heads = options_.mtp_heads;
  out->vocab_size = vocab;
  out->row_offset.assign(1, 0);
  out->argmax.clear();
  out->logits.clear();
  out->mtp_logits.clear();
  out->mtp_argmax.clear();
  out->sampled.clear();
  bool any_heads = false;
  for (const SequenceInput& in : batch) any_heads = any_heads || in.mtp_heads;
  out->num_mtp_heads = any_heads ? heads : 0;
  for (const SequenceInput& in : batch) {
    State s = slots_[in.slot];
    for (size_t t = 0; t < in.tokens.size(); ++t) {
      s = Advance(s, in.tokens[t]);
      if (!in.all_logits && t + 1 < in.tokens.size()) continue;
      const int32_t next = Next(s);
      out->argmax.push_back(next);
      if (!tokens_only) {
        std::vector<float> row(vocab, 0.0f);
        row[next] = 10.0f;
        out->logits.insert(out->logits.end(), row.begin(), row.end());
      }
      if (!any_heads) continue;
      // Head h predicts greedy decoding's token h positions after `next`.
      State future = Advance(s, next);
      const int wrong = options_.wrong_draft_every > 0 && (s.hash >> 8) % options_.wrong_draft_every == 0
                            ? 1 + static_cast<int>(s.hash % heads)
                            : 0;
      for (int h = 1; h <= heads; ++h) {
        int32_t draft = Next(future);
        future = Advance(future, draft);
        const bool wrong_here = options_.wrong_draft && options_.wrong_draft(pass, h);
        if (h == wrong || wrong_here) draft = (draft + 1) % vocab;
        if (!in.mtp_heads) draft = -1;
        out->mtp_argmax.push_back(draft);
        if (!tokens_only) {
          std::vector<float> row(vocab, 0.0f);
          if (draft >= 0) row[draft] = 10.0f;
          out->mtp_logits.insert(out->mtp_logits.end(), row.begin(), row.end());
        }
      }
    }
    out->row_offset.push_back(static_cast<int>(out->argmax.size()));
    if (in.defer_commit) {
      deferred_[in.slot].assign(in.tokens.begin(), in.tokens.end());
    } else {
      slots_[in.slot] = s;
      deferred_[in.slot].clear();
    }
  }
  return absl::OkStatus();
}

std::vector<OpenChoice> FakeBackend::OpenChoices() const {
  std::vector<OpenChoice> open;
  for (size_t i = 0; i < choice_states.size(); ++i) {
    if (choice_states[i].opened && !choice_states[i].settled) {
      open.push_back({static_cast<int>(i), static_cast<int>(options_.choices[i].seconds.size())});
    }
  }
  return open;
}

absl::Status FakeBackend::TakeCandidate(int id, int candidate, std::span<const double> pass_seconds) {
  if (id < 0 || id >= static_cast<int>(choice_states.size()) || !choice_states[id].opened ||
      choice_states[id].settled || candidate < 0 ||
      candidate >= static_cast<int>(options_.choices[id].seconds.size())) {
    return absl::InvalidArgumentError("no open choice " + std::to_string(id) + " with candidate " +
                                      std::to_string(candidate));
  }
  ChoiceState& c = choice_states[id];
  c.taken = candidate;
  if (!pass_seconds.empty()) {
    c.settled = true;
    c.pass_seconds.assign(pass_seconds.begin(), pass_seconds.end());
    const int closes = options_.choices[id].closes;
    if (candidate != 0 && closes >= 0 && closes < static_cast<int>(choice_states.size())) {
      choice_states[closes].settled = true;
    }
  }
  return absl::OkStatus();
}

absl::Status FakeBackend::Commit(std::span<const CommitInput> commits) {
  for (const CommitInput& c : commits) {
    if (c.slot < 0 || c.slot >= num_slots()) return absl::OutOfRangeError("commit: slot out of range");
    if (c.num_tokens < 0 || c.num_tokens > static_cast<int>(deferred_[c.slot].size())) {
      return absl::FailedPreconditionError("commit: more tokens than the slot's deferred forward had");
    }
  }
  for (const CommitInput& c : commits) {
    for (int i = 0; i < c.num_tokens; ++i) slots_[c.slot] = Advance(slots_[c.slot], deferred_[c.slot][i]);
    deferred_[c.slot].clear();
  }
  return absl::OkStatus();
}

absl::Status FakeBackend::AllocateSnapshots(int device, int host) {
  tiers_[0].assign(device, State{});
  tiers_[1].assign(host, State{});
  return absl::OkStatus();
}

absl::Status FakeBackend::CheckRef(SnapshotRef ref) const {
  const auto& tier = tiers_[static_cast<int>(ref.tier)];
  if (ref.index < 0 || ref.index >= static_cast<int>(tier.size())) return absl::OutOfRangeError("snapshot out of range");
  return absl::OkStatus();
}

absl::Status FakeBackend::SaveSnapshot(int slot, SnapshotRef dst) {
  RETURN_IF_ERROR(CheckRef(dst));
  if (slot < 0 || slot >= num_slots()) return absl::OutOfRangeError("slot out of range");
  tiers_[static_cast<int>(dst.tier)][dst.index] = slots_[slot];
  copies.push_back({Copy::kSave, slot, {}, dst});
  return absl::OkStatus();
}

absl::Status FakeBackend::RestoreSnapshot(SnapshotRef src, int slot) {
  RETURN_IF_ERROR(CheckRef(src));
  if (slot < 0 || slot >= num_slots()) return absl::OutOfRangeError("slot out of range");
  slots_[slot] = tiers_[static_cast<int>(src.tier)][src.index];
  deferred_[slot].clear();
  copies.push_back({Copy::kRestore, slot, src, {}});
  return absl::OkStatus();
}

absl::Status FakeBackend::CopySnapshot(SnapshotRef src, SnapshotRef dst) {
  RETURN_IF_ERROR(CheckRef(src));
  RETURN_IF_ERROR(CheckRef(dst));
  tiers_[static_cast<int>(dst.tier)][dst.index] = tiers_[static_cast<int>(src.tier)][src.index];
  copies.push_back({Copy::kMove, -1, src, dst});
  return absl::OkStatus();
}

// The state as floats: the hash in four exact 16-bit parts, then the count of tokens seen.
absl::Status FakeBackend::ReadSlot(int slot, std::span<float> out) const {
  if (slot < 0 || slot >= num_slots()) return absl::OutOfRangeError("slot out of range");
  if (static_cast<int64_t>(out.size()) != layout_.slot_floats()) return absl::InvalidArgumentError("buffer size");
  std::fill(out.begin(), out.end(), 0.0f);
  for (int i = 0; i < 4; ++i) out[i] = static_cast<float>((slots_[slot].hash >> (16 * i)) & 0xffff);
  out[4] = static_cast<float>(slots_[slot].seen.size());
  return absl::OkStatus();
}

absl::Status FakeBackend::WriteSlot(int, std::span<const float>) {
  return absl::UnimplementedError("the fake backend's state cannot be written from floats");
}

}  // namespace xlserve::testing
