#include "server/state_store.h"

#include <catch2/catch.hpp>

namespace xlserve::server {
namespace {

using Clock = std::chrono::steady_clock;

// A snapshot of `floats` values, all equal to `tag`, so a test can tell which one came back.
std::shared_ptr<const StateSnapshot> Snapshot(float tag, size_t floats = 4, bool heads = false) {
  auto s = std::make_shared<StateSnapshot>();
  s->state.assign(floats, tag);
  s->heads_tracked = heads;
  return s;
}

TEST_CASE("the prefix cache returns the longest cached prefix that leaves a token to run") {
  PrefixCache cache(1 << 20, 2);
  cache.Insert({1, 2}, Snapshot(2));
  cache.Insert({1, 2, 3, 4}, Snapshot(4));
  cache.Insert({1, 9, 9}, Snapshot(9));

  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
  auto hit = cache.Lookup(prompt, false);
  REQUIRE(hit);
  CHECK(hit->first == 4);
  CHECK(hit->second->state[0] == 4);

  // The whole prompt cached is no use: its last token must still produce logits.
  const std::vector<int32_t> exact = {1, 2, 3, 4};
  hit = cache.Lookup(exact, false);
  REQUIRE(hit);
  CHECK(hit->first == 2);

  const std::vector<int32_t> other = {7, 1, 2};
  CHECK_FALSE(cache.Lookup(other, false));
}

TEST_CASE("a request that drafts needs a snapshot whose heads followed the prefix") {
  PrefixCache cache(1 << 20, 1);
  cache.Insert({1, 2, 3}, Snapshot(3, 4, /*heads=*/false));
  cache.Insert({1, 2}, Snapshot(2, 4, /*heads=*/true));
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  CHECK(cache.Lookup(prompt, /*heads=*/true)->first == 2);
  CHECK(cache.Lookup(prompt, /*heads=*/false)->first == 3);
}

TEST_CASE("the prefix cache stays within its byte bound, evicting the least recently used") {
  // Each snapshot is 4 floats = 16 bytes; the bound holds two.
  PrefixCache cache(32, 1);
  cache.Insert({1}, Snapshot(1));
  cache.Insert({2}, Snapshot(2));
  const std::vector<int32_t> uses_first = {1, 5};
  REQUIRE(cache.Lookup(uses_first, false));  // {1} is now the most recently used
  cache.Insert({3}, Snapshot(3));
  CHECK(cache.size() == 2);
  const std::vector<int32_t> after_second = {2, 5};
  const std::vector<int32_t> after_third = {3, 5};
  CHECK(cache.Lookup(uses_first, false));
  CHECK_FALSE(cache.Lookup(after_second, false));
  CHECK(cache.Lookup(after_third, false));

  // A snapshot larger than the whole bound is not kept at all.
  cache.Insert({4}, Snapshot(4, 100));
  CHECK(cache.size() == 2);
}

TEST_CASE("prefix caching is off with no bytes and for prefixes below the minimum") {
  CHECK_FALSE(PrefixCache(0, 1).WorthCaching(100));
  PrefixCache cache(1 << 20, 16);
  CHECK_FALSE(cache.WorthCaching(15));
  CHECK(cache.WorthCaching(16));
}

Session MakeSession(float tag, Clock::time_point last_used) {
  Session s;
  s.snapshot = Snapshot(tag);
  s.last_used = last_used;
  return s;
}

TEST_CASE("sessions expire after their TTL and the least recently used go beyond the bound") {
  const auto t0 = Clock::now();
  SessionStore store(2, std::chrono::seconds(60));
  store.Put("a", MakeSession(1, t0));
  store.Put("b", MakeSession(2, t0 + std::chrono::seconds(1)));
  store.Put("c", MakeSession(3, t0 + std::chrono::seconds(2)));
  CHECK(store.size() == 2);
  CHECK_FALSE(store.Get("a", t0 + std::chrono::seconds(3)));
  REQUIRE(store.Get("c", t0 + std::chrono::seconds(3)));
  CHECK(store.Get("c", t0 + std::chrono::seconds(3))->snapshot->state[0] == 3);

  // Past the TTL of "b" (last used at t0+1 s) but not of "c" (t0+2 s).
  store.Expire(t0 + std::chrono::seconds(61) + std::chrono::milliseconds(500));
  CHECK_FALSE(store.Get("b", t0 + std::chrono::seconds(61) + std::chrono::milliseconds(500)));
  CHECK(store.size() == 1);
}

TEST_CASE("a store bounded to zero sessions keeps none") {
  SessionStore store(0, std::chrono::seconds(60));
  store.Put("a", MakeSession(1, Clock::now()));
  CHECK(store.size() == 0);
}

}  // namespace
}  // namespace xlserve::server
