#include "kernels/batch_plan.h"

#include <catch2/catch.hpp>
#include <vector>

namespace xlserve::kernels {
namespace {

constexpr int kScratchSlot = 7;

DeferredCommits Commits() {
  DeferredCommits commits(DeferredStoreLayout{2, 8, 4, 4, 1});
  commits.Resize(kScratchSlot + 1);
  return commits;
}

SequenceInput Seq(int slot, const std::vector<int32_t>& tokens) {
  SequenceInput s;
  s.slot = slot;
  s.tokens = tokens;
  return s;
}

std::vector<int32_t> Read(const int32_t* p, int n) { return std::vector<int32_t>(p, p + n); }

TEST_CASE("a mixed batch: rows, unembedded rows, kernel subsets and the packed upload") {
  DeferredCommits commits = Commits();
  const std::vector<int32_t> prompt = {11, 12, 13, 14}, decode = {21}, verify = {31, 32, 33};
  SequenceInput p = Seq(0, prompt);
  SequenceInput d = Seq(1, decode);
  SequenceInput v = Seq(2, verify);
  v.defer_commit = true;
  v.mtp_heads = true;
  v.all_logits = true;
  const std::vector<SequenceInput> batch = {p, d, v};
  // Slots 0 and 2 hold a reset's zero state; slot 1 does not.
  const std::vector<uint8_t> fresh = {1, 0, 1};
  const ForwardPlan plan = PlanForward(batch, kScratchSlot, true, false, fresh, &commits);

  CHECK_FALSE(plan.graph_step);
  CHECK(plan.seqs.size() == 3);
  CHECK(plan.rows == 8);
  CHECK(plan.trunk.row_begin == std::vector<int32_t>{0, 4, 5, 8});
  CHECK(plan.trunk.picked == std::vector<int32_t>{3, 4, 5, 6, 7});  // last rows; every row of the verify
  CHECK(plan.trunk.row_offset == std::vector<int>{0, 1, 2, 5});
  CHECK(plan.trunk.multi.slots == std::vector<int32_t>{0});
  CHECK(plan.trunk.single.slots == std::vector<int32_t>{1});
  CHECK(plan.trunk.deferred.slots == std::vector<int32_t>{2});
  CHECK(plan.trunk.multi.max_tokens == 4);
  CHECK(plan.trunk.multi.fresh == std::vector<int32_t>{1});
  CHECK(plan.trunk.single.fresh == std::vector<int32_t>{0});
  CHECK(plan.trunk.deferred.fresh == std::vector<int32_t>{1});
  CHECK(plan.trunk.deferred.max_tokens == 3);
  const int32_t store_row = commits.layout().Row(2, commits.slot(2).half, 0);
  CHECK(plan.trunk.defer_src == std::vector<int32_t>{5, 6, 7});
  CHECK(plan.trunk.defer_dst == std::vector<int32_t>{store_row, store_row + 1, store_row + 2});
  CHECK(plan.any_deferred());
  CHECK_FALSE(plan.any_fused);
  CHECK(plan.commit_first.empty());
  // The heads' sub-batch: the verify alone, its rows gathered densely.
  CHECK(plan.head_rows == 3);
  CHECK(plan.heads.row_begin == std::vector<int32_t>{0, 3});
  CHECK(plan.heads.picked == std::vector<int32_t>{0, 1, 2});
  CHECK(commits.slot(2).tokens == 3);
  CHECK(commits.slot(2).heads);

  // The device view, read back from the host copy of the upload.
  const int32_t* at = plan.packed.data();
  CHECK(Read(at, plan.rows) == std::vector<int32_t>{11, 12, 13, 14, 21, 31, 32, 33});
  CHECK(Read(at + plan.rows, plan.head_rows) == std::vector<int32_t>{5, 6, 7});
  float store = 0;
  const Indices idx = plan.trunk.Resolve(at + plan.trunk_at, &store);
  CHECK(idx.num_seqs == 3);
  CHECK(Read(idx.row_begin, 4) == plan.trunk.row_begin);
  CHECK(Read(idx.slots, 3) == std::vector<int32_t>{0, 1, 2});
  CHECK(Read(idx.picked, 5) == plan.trunk.picked);
  CHECK(Read(idx.defer, 3) == std::vector<int32_t>{0, 0, 1});
  CHECK(Read(idx.defer_dst, idx.num_defer_rows) == plan.trunk.defer_dst);
  CHECK(idx.multi.count == 1);
  CHECK(Read(idx.multi.begin, 1) == std::vector<int32_t>{0});
  CHECK(Read(idx.multi.end, 1) == std::vector<int32_t>{4});
  CHECK(Read(idx.multi.fresh, 1) == std::vector<int32_t>{1});
  CHECK(Read(idx.single.fresh, 1) == std::vector<int32_t>{0});
  CHECK(idx.multi.all_fresh);
  CHECK_FALSE(idx.single.all_fresh);
  CHECK(Read(idx.single.slots, 1) == std::vector<int32_t>{1});
  CHECK(Read(idx.deferred.begin, 1) == std::vector<int32_t>{5});
  CHECK(Read(idx.deferred.end, 1) == std::vector<int32_t>{8});
  CHECK(Read(idx.deferred.keep_begin, 1) == std::vector<int32_t>{store_row});
  CHECK(idx.store == &store);
  const Indices heads = plan.heads.Resolve(at + plan.heads_at, &store);
  CHECK(heads.num_seqs == 1);
  CHECK(Read(heads.slots, 1) == std::vector<int32_t>{2});
  CHECK(Read(heads.deferred.end, 1) == std::vector<int32_t>{3});
  CHECK(Read(heads.deferred.fresh, 1) == std::vector<int32_t>{1});
  // row_begin, slots, picked, defer, defer_src, defer_dst, then seven arrays per subset sequence.
  CHECK(plan.heads_at + 2 + 1 + 3 + 1 + 3 + 3 + 7 * 1 == plan.packed.size());
}

TEST_CASE("a uniform tokens-only step is padded to a power of two on the scratch slot and keyed by its shape") {
  DeferredCommits commits = Commits();
  const std::vector<int32_t> a = {1}, b = {2}, c = {3};
  std::vector<SequenceInput> batch = {Seq(0, a), Seq(1, b), Seq(2, c)};
  for (SequenceInput& s : batch) s.tokens_only = true;
  const ForwardPlan plan = PlanForward(batch, kScratchSlot, true, false, {}, &commits);
  REQUIRE(plan.graph_step);
  REQUIRE(plan.seqs.size() == 4);
  CHECK(plan.seqs[3].slot == kScratchSlot);
  CHECK(plan.seqs[3].tokens.size() == 1);
  CHECK(plan.seqs[3].sample == nullptr);
  CHECK(plan.rows == 4);
  CHECK(plan.trunk.row_offset.size() == 5);

  std::vector<SequenceInput> with_heads = batch;
  for (SequenceInput& s : with_heads) s.mtp_heads = true;
  const ForwardPlan other = PlanForward(with_heads, kScratchSlot, true, false, {}, &commits);
  REQUIRE(other.graph_step);
  CHECK(other.graph_key != plan.graph_key);
  const std::vector<SequenceInput> five = {batch[0], batch[1], batch[2], batch[0], batch[1]};
  CHECK(PlanForward(five, kScratchSlot, true, false, {}, &commits).seqs.size() == 8);
  CHECK(PlanForward(five, kScratchSlot, true, false, {}, &commits).graph_key != plan.graph_key);
}

TEST_CASE("steps that are not uniform, return logits, carry prompts or are profiled run eagerly") {
  DeferredCommits commits = Commits();
  const std::vector<int32_t> one = {1}, two = {1, 2};
  SequenceInput a = Seq(0, one), b = Seq(1, one);
  a.tokens_only = b.tokens_only = true;
  CHECK(PlanForward(std::vector{a, b}, kScratchSlot, true, false, {}, &commits).graph_step);
  CHECK_FALSE(PlanForward(std::vector{a, b}, kScratchSlot, true, true, {}, &commits).graph_step);
  SequenceInput logits = b;
  logits.tokens_only = false;
  CHECK_FALSE(PlanForward(std::vector{a, logits}, kScratchSlot, true, false, {}, &commits).graph_step);
  SequenceInput prompt = Seq(1, two);
  prompt.tokens_only = true;
  CHECK_FALSE(PlanForward(std::vector{prompt}, kScratchSlot, true, false, {}, &commits).graph_step);
  SequenceInput heads = b;
  heads.mtp_heads = true;
  CHECK_FALSE(PlanForward(std::vector{a, heads}, kScratchSlot, true, false, {}, &commits).graph_step);
  const ForwardPlan eager = PlanForward(std::vector{a, logits}, kScratchSlot, true, false, {}, &commits);
  CHECK(eager.seqs.size() == 2);
}

TEST_CASE("a recorded commit rides with its slot's verify, or is applied before the pass") {
  DeferredCommits commits = Commits();
  const std::vector<int32_t> draft = {4, 5, 6};
  SequenceInput v0 = Seq(0, draft), v1 = Seq(1, draft);
  v0.defer_commit = v1.defer_commit = true;
  v0.tokens_only = v1.tokens_only = true;
  const std::vector<SequenceInput> verify = {v0, v1};
  const ForwardPlan first = PlanForward(verify, kScratchSlot, true, false, {}, &commits);
  CHECK(first.graph_step);
  const CommitInput c[] = {{0, 2}, {1, 3}};
  REQUIRE(commits.Record(c).ok());
  const int half0 = commits.slot(0).half;

  // Slot 0 verifies again (fused); slot 1 takes a plain step (its commit goes first).
  const std::vector<int32_t> one = {9};
  SequenceInput plain = Seq(1, one);
  plain.tokens_only = true;
  const ForwardPlan next = PlanForward(std::vector{v0, plain}, kScratchSlot, true, false, {}, &commits);
  CHECK(next.any_fused);
  CHECK(next.commit_first.count == 1);
  CHECK(next.commit_first.packed.back() == 1);
  const int32_t pend_row = commits.layout().Row(0, half0, 0);
  CHECK(next.trunk.deferred.pend_begin == std::vector<int32_t>{pend_row});
  CHECK(next.trunk.deferred.pend_end == std::vector<int32_t>{pend_row + 2});
  CHECK(next.trunk.deferred.any_pending);
  CHECK(next.trunk.single.pend_end == next.trunk.single.pend_begin);  // no commit rides with a plain step

  // Without the tiled kernels nothing fuses: the commit is applied first.
  DeferredCommits recurrent = Commits();
  PlanForward(verify, kScratchSlot, false, false, {}, &recurrent);
  REQUIRE(recurrent.Record(c).ok());
  const ForwardPlan unfused = PlanForward(std::vector{v0}, kScratchSlot, false, false, {}, &recurrent);
  CHECK_FALSE(unfused.any_fused);
  CHECK(unfused.commit_first.count == 1);
}

TEST_CASE("head rows are reordered from [head][sub-batch row] to [row][head] over the whole batch") {
  DeferredCommits commits = Commits();
  const std::vector<int32_t> one = {1}, two = {1, 2};
  SequenceInput a = Seq(0, two), b = Seq(1, one), c = Seq(2, two);
  a.mtp_heads = c.mtp_heads = true;
  a.all_logits = true;
  const std::vector<SequenceInput> batch = {a, b, c};
  const ForwardPlan plan = PlanForward(batch, kScratchSlot, true, false, {}, &commits);
  // Picked rows: a's two, b's last, c's last; the heads' sub-batch picks a's two and c's one.
  REQUIRE(plan.heads.picked.size() == 3);
  const int heads = 2;
  // src[head][sub-batch row] = 10 * head + row
  const std::vector<int> src = {10, 11, 12, 20, 21, 22};
  std::vector<int> out;
  ScatterHeadRows(std::span<const SequenceInput>(batch), plan.trunk, plan.heads, heads, src.data(), 1, &out);
  CHECK(out == std::vector<int>{10, 20, 11, 21, 0, 0, 12, 22});
  std::vector<int> none;
  ScatterHeadRows(std::span<const SequenceInput>(std::vector{b}), plan.trunk, IndexPlan{}, heads, src.data(), 1, &none);
  CHECK(none.empty());
}

}  // namespace
}  // namespace xlserve::kernels
