#include "kernels/deferred_commits.h"

#include <catch2/catch.hpp>
#include <set>
#include <vector>

namespace xlserve::kernels {
namespace {

DeferredStoreLayout SmallLayout() { return DeferredStoreLayout{3, 4, 8, 12, 2}; }

SequenceInput Verify(int slot, const std::vector<int32_t>& tokens, bool heads) {
  SequenceInput s;
  s.slot = slot;
  s.tokens = tokens;
  s.defer_commit = true;
  s.mtp_heads = heads;
  return s;
}

TEST_CASE("every slot, half, layer and token has its own row of the store, inside it") {
  const DeferredStoreLayout layout = SmallLayout();
  CHECK(layout.width() == 8 + 12 + 2 * 2);
  CHECK(layout.fgate_column() + layout.heads == layout.width());
  const int slots = 5;
  std::set<int64_t> starts;
  for (int slot = 0; slot < slots; ++slot) {
    for (int half = 0; half < 2; ++half) {
      for (int layer = 0; layer < layout.num_layers; ++layer) {
        for (int t = 0; t < layout.max_tokens; ++t) {
          const int64_t start = layout.LayerOffset(layer) + int64_t(layout.Row(slot, half, t)) * layout.width();
          CHECK(start >= 0);
          CHECK(start + layout.width() <= int64_t(layout.Floats(slots)));
          starts.insert(start);
        }
      }
    }
  }
  CHECK(starts.size() == size_t(slots) * 2 * layout.num_layers * layout.max_tokens);
}

TEST_CASE("Commit records at most what the slot's last forward deferred") {
  DeferredCommits commits(SmallLayout());
  commits.Resize(3);
  const std::vector<int32_t> tokens = {5, 6, 7};
  commits.Place(Verify(1, tokens, true), false);
  CHECK(commits.slot(1).tokens == 3);
  const CommitInput too_many[] = {{1, 4}};
  CHECK(commits.Record(too_many).code() == absl::StatusCode::kFailedPrecondition);
  const CommitInput none_deferred[] = {{0, 1}};
  CHECK(commits.Record(none_deferred).code() == absl::StatusCode::kFailedPrecondition);
  const CommitInput two[] = {{1, 2}};
  REQUIRE(commits.Record(two).ok());
  CHECK(commits.slot(1).pending == 2);
  CHECK(commits.slot(1).pending_heads);
  CHECK(commits.slot(1).pending_half == commits.slot(1).half);
  CHECK(commits.slot(1).tokens == 0);  // a second commit of the same forward has nothing left
  CHECK(commits.Record(two).code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("a verify fuses its slot's commit only through the tiled kernels over the same layers") {
  DeferredCommits commits(SmallLayout());
  commits.Resize(2);
  const std::vector<int32_t> tokens = {1, 2};
  commits.Place(Verify(0, tokens, true), false);
  const CommitInput c[] = {{0, 1}};
  REQUIRE(commits.Record(c).ok());
  CHECK(commits.Fuses(Verify(0, tokens, true), true));
  CHECK_FALSE(commits.Fuses(Verify(0, tokens, true), false));  // the recurrent kernel
  CHECK_FALSE(commits.Fuses(Verify(0, tokens, false), true));  // the head layers would miss it
  SequenceInput plain = Verify(0, tokens, true);
  plain.defer_commit = false;
  CHECK_FALSE(commits.Fuses(plain, true));
  CHECK_FALSE(commits.Fuses(Verify(1, tokens, true), true));  // nothing pending there
}

TEST_CASE("successive verifies alternate halves, and a fused commit reads the half the verify does not write") {
  const DeferredStoreLayout layout = SmallLayout();
  DeferredCommits commits(layout);
  commits.Resize(2);
  const std::vector<int32_t> tokens = {1, 2, 3};
  int previous_half = -1;
  for (int round = 0; round < 4; ++round) {
    const SequenceInput v = Verify(1, tokens, false);
    const bool fused = commits.Fuses(v, true);
    CHECK(fused == (round > 0));
    const int pending_half = commits.slot(1).pending_half;
    const DeferredPlacement p = commits.Place(v, fused);
    const int half = commits.slot(1).half;
    CHECK(p.store_row == layout.Row(1, half, 0));
    if (round > 0) {
      CHECK(half != previous_half);
      CHECK(pending_half == previous_half);
      CHECK(p.pend == 2);
      CHECK(p.pend_row == layout.Row(1, previous_half, 0));
    } else {
      CHECK(p.pend == 0);
    }
    CHECK(commits.slot(1).pending == 0);  // the verify applied it
    const CommitInput c[] = {{1, 2}};
    REQUIRE(commits.Record(c).ok());
    previous_half = half;
  }
}

TEST_CASE("pending commits are taken for the commit kernel, heads first, once") {
  const DeferredStoreLayout layout = SmallLayout();
  DeferredCommits commits(layout);
  commits.Resize(4);
  const std::vector<int32_t> tokens = {1, 2, 3};
  commits.Place(Verify(0, tokens, false), false);
  commits.Place(Verify(2, tokens, true), false);
  commits.Place(Verify(3, tokens, false), false);
  const CommitInput c[] = {{0, 3}, {2, 1}, {3, 0}};
  REQUIRE(commits.Record(c).ok());
  const int slots[] = {0, 1, 2, 3};
  const CommitPlan plan = commits.TakePending(slots);
  REQUIRE(plan.count == 2);  // slot 1 deferred nothing; slot 3 committed none of its tokens
  CHECK(plan.with_heads == 1);
  const int h0 = commits.slot(0).pending_half, h2 = commits.slot(2).pending_half;
  CHECK(plan.packed == std::vector<int32_t>{layout.Row(2, h2, 0), layout.Row(0, h0, 0), layout.Row(2, h2, 1),
                                            layout.Row(0, h0, 3), 2, 0});
  CHECK(commits.slot(0).pending == 0);
  CHECK(commits.slot(2).pending == 0);
  CHECK(commits.TakePending(slots).empty());
}

TEST_CASE("a slot whose state is overwritten forgets what it deferred") {
  DeferredCommits commits(SmallLayout());
  commits.Resize(2);
  const std::vector<int32_t> tokens = {1, 2};
  commits.Place(Verify(0, tokens, false), false);
  const CommitInput c[] = {{0, 2}};
  REQUIRE(commits.Record(c).ok());
  commits.Clear(0);
  const int slots[] = {0};
  CHECK(commits.TakePending(slots).empty());
  CHECK(commits.Record(c).code() == absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace xlserve::kernels
