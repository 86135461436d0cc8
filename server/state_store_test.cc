#include "server/state_store.h"

#include <catch2/catch.hpp>

#include "engine/testing/fake_backend.h"

namespace xlserve::server {
namespace {

using testing::FakeBackend;
using testing::FakeBackendOptions;
constexpr int64_t kMiB = 1 << 20;  // FakeBackend's snapshot size

struct Fixture {
  explicit Fixture(int device, int host, int min_tokens = 2) : backend(FakeBackendOptions{}) {
    REQUIRE(backend.AllocateSlots(4).ok());
    StateStoreOptions o;
    o.device_bytes = device * kMiB;
    o.host_bytes = host * kMiB;
    o.min_prefix_tokens = min_tokens;
    o.session_ttl = std::chrono::seconds(60);
    store = std::make_unique<StateStore>(&backend, o, [this] { return now; });
    REQUIRE(store->Init().ok());
  }
  // Runs `tokens` on `slot` from its current state.
  void Run(int slot, std::vector<int32_t> tokens) {
    SequenceInput in;
    in.slot = slot;
    in.tokens = tokens;
    ForwardOutput out;
    REQUIRE(backend.Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  }
  // Prefills `prompt` into slot 0 the way the scheduler does: restore, then run to each
  // snapshot point and keep the state there. Returns the plan.
  StateStore::PromptPlan Prefill(const std::vector<int32_t>& prompt, bool heads = false) {
    REQUIRE(backend.ResetSlot(0).ok());
    absl::StatusOr<StateStore::PromptPlan> plan = store->BeginPrompt(prompt, heads, 0);
    REQUIRE(plan.ok());
    int at = plan->cached_tokens;
    for (int point : plan->snapshot_points) {
      Run(0, std::vector<int32_t>(prompt.begin() + at, prompt.begin() + point));
      REQUIRE(store->SavePrefix(std::span<const int32_t>(prompt).first(point), heads, 0).ok());
      at = point;
    }
    if (at < static_cast<int>(prompt.size())) Run(0, std::vector<int32_t>(prompt.begin() + at, prompt.end()));
    CHECK(backend.seen(0) == prompt);  // what was restored plus what ran is the whole prompt
    return *plan;
  }

  FakeBackend backend;
  StateStore::Clock::time_point now{};
  std::unique_ptr<StateStore> store;
};

// Token ids begin..end-1 (the fake's vocabulary has 64).
std::vector<int32_t> Range(int begin, int end) {
  std::vector<int32_t> v;
  for (int i = begin; i < end; ++i) v.push_back(i);
  return v;
}

std::vector<int32_t> Cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST_CASE("the store sizes each tier in whole snapshots of its byte bound") {
  FakeBackend backend(FakeBackendOptions{});
  StateStoreOptions o;
  o.device_bytes = 5 * kMiB / 2;  // 2.5 snapshots
  o.host_bytes = 3 * kMiB;
  StateStore store(&backend, o);
  REQUIRE(store.Init().ok());
  CHECK(store.capacity(SnapshotTier::kDevice) == 2);
  CHECK(store.capacity(SnapshotTier::kHost) == 3);
  CHECK(store.stats().capacity_bytes[0] == 2 * kMiB);
  CHECK(store.stats().capacity_bytes[1] == 3 * kMiB);
}

TEST_CASE("a prompt restores the longest cached prefix and snapshots where reuse is likely") {
  Fixture f(8, 0);
  const std::vector<int32_t> shared = Range(0, 20);
  const std::vector<int32_t> a = Cat(shared, Range(40, 45)), b = Cat(shared, Range(50, 54));

  // First sight: nothing cached; the state after the whole prompt is kept.
  StateStore::PromptPlan plan = f.Prefill(a);
  CHECK(plan.cached_tokens == 0);
  CHECK(plan.snapshot_points == std::vector<int>{25});

  // A second prompt branching off after 20 tokens: the branch point is worth a snapshot.
  plan = f.Prefill(b);
  CHECK(plan.cached_tokens == 0);
  CHECK(plan.snapshot_points == std::vector<int>{20, 24});

  // A third one restores the branch point and runs only its own tokens.
  const std::vector<int32_t> c = Cat(shared, Range(60, 63));
  plan = f.Prefill(c);
  CHECK(plan.cached_tokens == 20);
  CHECK(plan.snapshot_points == std::vector<int>{23});

  // A prompt extending `a` restores all of `a`.
  plan = f.Prefill(Cat(a, {7, 7, 7}));
  CHECK(plan.cached_tokens == 25);

  // The same prompt again: its whole state cannot serve (its last token must run for logits),
  // so the state one token short is kept, and the next copy restores that.
  plan = f.Prefill(c);
  CHECK(plan.cached_tokens == 20);
  CHECK(plan.snapshot_points == std::vector<int>{22});
  plan = f.Prefill(c);
  CHECK(plan.cached_tokens == 22);
  CHECK(plan.snapshot_points.empty());

  CHECK(f.store->stats().prefix_hits == 4);
  CHECK(f.store->stats().prefix_hit_tokens == 20 + 25 + 20 + 22);
  CHECK(f.Prefill(Range(40, 41)).snapshot_points.empty());  // shorter than min_prefix_tokens
}

TEST_CASE("a request that drafts needs a prefix state whose heads followed the prefix") {
  Fixture f(8, 0);
  const std::vector<int32_t> prompt = Range(0, 10);
  REQUIRE(f.store->BeginPrompt(prompt, false, 0).ok());
  f.Run(0, prompt);
  REQUIRE(f.store->SavePrefix(prompt, /*heads=*/false, 0).ok());
  const std::vector<int32_t> longer = Cat(prompt, {1, 2});
  CHECK(f.store->BeginPrompt(longer, /*heads=*/true, 1)->cached_tokens == 0);
  CHECK(f.store->BeginPrompt(longer, /*heads=*/false, 1)->cached_tokens == 10);
  REQUIRE(f.store->SavePrefix(prompt, /*heads=*/true, 0).ok());
  CHECK(f.store->BeginPrompt(longer, /*heads=*/true, 1)->cached_tokens == 10);
}

TEST_CASE("a full device tier spills its cheapest entry to the host tier, and restores read either tier") {
  Fixture f(2, 2);
  const std::vector<int32_t> p1 = Range(0, 10), p2 = Range(20, 40), p3 = Range(30, 45);
  f.Prefill(p1);
  f.Prefill(p2);
  CHECK(f.store->stats().used_bytes[0] == 2 * kMiB);
  CHECK(f.store->stats().used_bytes[1] == 0);
  f.Prefill(p3);
  // p1 saves the least prefill: it moved to the host tier by an asynchronous copy.
  CHECK(f.store->stats().spills == 1);
  CHECK(f.store->stats().used_bytes[0] == 2 * kMiB);
  CHECK(f.store->stats().used_bytes[1] == 1 * kMiB);
  REQUIRE(!f.backend.copies.empty());
  CHECK(f.backend.copies.back().kind == FakeBackend::Copy::kSave);
  bool moved = false;
  for (const auto& c : f.backend.copies) {
    if (c.kind == FakeBackend::Copy::kMove) {
      moved = true;
      CHECK(c.from.tier == SnapshotTier::kDevice);
      CHECK(c.to.tier == SnapshotTier::kHost);
      CHECK(f.backend.snapshot(c.to) == p1);
    }
  }
  CHECK(moved);
  // p1 extended restores from the host tier, bit for bit the state after p1.
  StateStore::PromptPlan plan = f.Prefill(Cat(p1, {3}));
  CHECK(plan.cached_tokens == 10);
  CHECK(f.store->stats().restores[1] == 1);
}

TEST_CASE("the device tier spills ahead of need, so a save never lands in a buffer still being copied out") {
  Fixture f(16, 32);
  for (int i = 0; i < 40; ++i) {
    f.Prefill(Cat({static_cast<int32_t>(i)}, Range(10, 15 + i % 7)));
    if (i >= 16) CHECK(f.store->stats().used_bytes[0] <= 14 * kMiB);  // two kept free
  }
  CHECK(f.store->stats().spills >= 40 - 16);
  // A buffer a spill copies out of is written again only after at least two other saves.
  const auto& copies = f.backend.copies;
  int checked = 0;
  for (size_t i = 0; i < copies.size(); ++i) {
    if (copies[i].kind != FakeBackend::Copy::kMove) continue;
    int saves_between = 0;
    for (size_t j = i + 1; j < copies.size(); ++j) {
      if (copies[j].kind != FakeBackend::Copy::kSave) continue;
      if (copies[j].to == copies[i].from) {
        CHECK(saves_between >= 2);
        ++checked;
        break;
      }
      ++saves_between;
    }
  }
  CHECK(checked > 10);
}

TEST_CASE("eviction keeps what saves the most prefill, drops sessions last, never preempted states") {
  Fixture f(0, 3);
  const std::vector<int32_t> small = Range(0, 4), big = Range(10, 40);
  f.Prefill(big);
  f.Prefill(small);
  // A session outranks any prefix entry: the small prefix goes, the big one stays.
  f.Run(1, {1, 2, 3});
  REQUIRE(f.store->SaveSession("s", StateStore::Session{5, 3, false}, 1).ok());
  REQUIRE(f.store->SaveSwapped(2).ok());
  CHECK(f.store->stats().prefix_entries == 1);
  CHECK(f.store->stats().evictions[1] == 1);
  CHECK(f.store->BeginPrompt(Cat(big, {1}), false, 3)->cached_tokens == 30);
  // Another preempted state takes the prefix's buffer, then the session's; a third finds none.
  absl::StatusOr<int64_t> second = f.store->SaveSwapped(2);
  REQUIRE(second.ok());
  CHECK(f.store->stats().prefix_entries == 0);
  CHECK(f.store->stats().session_entries == 1);
  REQUIRE(f.store->SaveSwapped(2).ok());
  CHECK(f.store->stats().session_entries == 0);
  CHECK(f.store->SaveSwapped(2).status().code() == absl::StatusCode::kResourceExhausted);
  // A prefix entry cannot push a preempted state out either: it is simply not kept.
  REQUIRE(f.store->SavePrefix(small, false, 0).ok());
  CHECK(f.store->stats().prefix_entries == 0);
  REQUIRE(f.store->RestoreSwapped(*second, 0).ok());
  CHECK(f.store->stats().swapped_entries == 2);
  CHECK(f.store->RestoreSwapped(*second, 0).code() == absl::StatusCode::kNotFound);
}

TEST_CASE("sessions restore their state, expire after their idle time, and stay within their count") {
  Fixture f(2, 2);
  f.Run(0, {4, 5, 6});
  REQUIRE(f.store->SaveSession("a", StateStore::Session{9, 3, true}, 0).ok());
  auto restored = f.store->RestoreSession("a", 1);
  REQUIRE(restored.ok());
  REQUIRE(restored->has_value());
  CHECK((*restored)->pending_token == 9);
  CHECK((*restored)->history_tokens == 3);
  CHECK((*restored)->heads_tracked);
  CHECK(f.backend.seen(1) == std::vector<int32_t>{4, 5, 6});
  CHECK_FALSE(f.store->RestoreSession("unknown", 1)->has_value());
  // Saving a session again replaces its state.
  f.Run(1, {7});
  REQUIRE(f.store->SaveSession("a", StateStore::Session{1, 4, true}, 1).ok());
  CHECK(f.store->num_sessions() == 1);
  CHECK(f.store->stats().session_entries == 1);
  f.now += std::chrono::seconds(61);
  CHECK_FALSE(f.store->RestoreSession("a", 1)->has_value());
  CHECK(f.store->num_sessions() == 0);
  CHECK(f.store->stats().used_bytes[0] + f.store->stats().used_bytes[1] == 0);
}

TEST_CASE("thousands of sessions stay within the store's bytes, evicting the least used") {
  Fixture f(3, 5);
  for (int i = 0; i < 2000; ++i) {
    f.Run(0, {i % 50});
    REQUIRE(f.store->SaveSession("session-" + std::to_string(i), StateStore::Session{1, i % 7 + 1, false}, 0).ok());
    CHECK(f.store->stats().used_bytes[0] <= 3 * kMiB);
    CHECK(f.store->stats().used_bytes[1] <= 5 * kMiB);
  }
  CHECK(f.store->num_sessions() == 8);
  CHECK(f.store->stats().evictions[0] + f.store->stats().evictions[1] == 2000 - 8);
  // The most recent ones are the ones kept.
  CHECK(f.store->RestoreSession("session-1999", 1)->has_value());
}

TEST_CASE("the prefix tree forgets old branches without snapshots beyond its token bound") {
  PrefixTree tree(1000);
  uint64_t clock = 0;
  for (int i = 0; i < 200; ++i) {
    std::vector<int32_t> prompt = {i};
    for (int t = 0; t < 20; ++t) prompt.push_back(t);
    tree.Record(prompt, false, 1, ++clock);
    tree.Prune();
    CHECK(tree.tokens() <= 1000);
  }
  // The newest prompt is still known: recording it again finds it seen before.
  std::vector<int32_t> last = {199};
  for (int t = 0; t < 20; ++t) last.push_back(t);
  const PrefixTree::Visit visit = tree.Record(last, false, 1, ++clock);
  CHECK(visit.snapshot_points == std::vector<int>{20, 21});
}

}  // namespace
}  // namespace xlserve::server
