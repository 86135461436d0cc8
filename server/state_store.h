// StateStore: recurrent states kept beyond a request — prefix snapshots, sessions and preempted
// sequences — in one store bounded in bytes, over the backend's two snapshot tiers.
//
// A recurrent state has a fixed size, so every entry costs the same: one snapshot buffer
// (Backend::snapshot_bytes). Buffers live in the device tier (GPU memory beside the slots:
// saving and restoring are device-to-device copies) or the host tier (pinned memory). A new
// entry takes a free device buffer, else the device's cheapest entry moves to the host tier
// (an asynchronous copy) or, when the host tier keeps only what is worth more, is dropped.
// Which entry is cheapest follows GreedyDual: an entry's worth is the prefill it saves (its
// tokens) plus an inflation that rises to the worth of each evicted entry, so what has not been
// used for a while loses to what saves more; prefix entries go before sessions, and preempted
// sequences are never evicted. Every copy is the backend's asynchronous kind: the caller never
// waits for one, and the device tier keeps a few buffers free ahead of need (spilling early),
// so that a new snapshot never has to wait on the GPU for a spill out of its buffer either.
// Not thread-safe: the scheduler thread owns it.
#pragma once

#include <chrono>
#include <deque>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "server/prefix_tree.h"

namespace xlserve::server {

struct StateStoreOptions {
  int64_t device_bytes = 0;  // device tier; 0: none
  int64_t host_bytes = 0;    // pinned host tier; 0: none
  int min_prefix_tokens = 16;  // shorter prefixes are not worth a snapshot
  int64_t max_tree_tokens = int64_t{1} << 22;  // token ids of seen prompts the prefix tree keeps
  int max_sessions = 100000;  // besides the byte bound
  std::chrono::seconds session_ttl{1800};
};

struct StateStoreStats {
  int64_t capacity_bytes[2] = {0, 0};  // by SnapshotTier
  int64_t used_bytes[2] = {0, 0};
  int64_t prefix_entries = 0, session_entries = 0, swapped_entries = 0;
  int64_t prefix_lookups = 0, prefix_hits = 0, prefix_hit_tokens = 0;
  int64_t saves = 0;
  int64_t restores[2] = {0, 0};   // by the tier restored from
  int64_t spills = 0;             // device -> host moves
  int64_t evictions[2] = {0, 0};  // entries dropped, by the tier they were in
  int64_t tree_tokens = 0;
};

class StateStore {
 public:
  using Clock = std::chrono::steady_clock;

  // `backend` must outlive the store; `now` (default: the steady clock) dates sessions.
  StateStore(Backend* backend, const StateStoreOptions& options, std::function<Clock::time_point()> now = {});

  // Allocates the tiers' buffers (as many whole snapshots as their bytes hold).
  absl::Status Init();
  int capacity(SnapshotTier tier) const { return capacity_[static_cast<int>(tier)]; }
  bool enabled() const { return capacity_[0] + capacity_[1] > 0; }

  // --- Prefix cache.
  struct PromptPlan {
    int cached_tokens = 0;            // restored into the slot: prefill starts after them
    std::vector<int> snapshot_points;  // prompt lengths after which to call SavePrefix
  };
  // Records `prompt`, restores into `slot` the longest cached prefix shorter than the prompt
  // that a request needing (`heads`) or not the MTP heads' states can use, and says where to
  // snapshot during its prefill.
  absl::StatusOr<PromptPlan> BeginPrompt(std::span<const int32_t> prompt, bool heads, int slot);
  // Keeps the state of `slot` as the state after `prefix` (a no-op when one is kept already).
  absl::Status SavePrefix(std::span<const int32_t> prefix, bool heads, int slot);

  // --- Sessions: a conversation's state between turns.
  struct Session {
    int32_t pending_token = -1;  // emitted last turn, not yet in the state
    int history_tokens = 0;      // tokens the state has seen
    bool heads_tracked = false;  // whether the MTP heads' states followed them
  };
  // The session `id` (expired ones are gone first), restored into `slot`; nullopt when unknown.
  absl::StatusOr<std::optional<Session>> RestoreSession(const std::string& id, int slot);
  absl::Status SaveSession(const std::string& id, const Session& session, int slot);
  void ExpireSessions();
  int num_sessions() const { return static_cast<int>(sessions_.size()); }

  // --- Preempted sequences: kept until restored or dropped, never evicted.
  // RESOURCE_EXHAUSTED when no buffer can be had.
  absl::StatusOr<int64_t> SaveSwapped(int slot);
  absl::Status RestoreSwapped(int64_t id, int slot);  // and forgets it
  void DropSwapped(int64_t id);

  const StateStoreStats& stats() const { return stats_; }

 private:
  enum class Kind { kPrefix = 0, kSession = 1, kSwapped = 2 };
  struct Entry {
    Kind kind;
    SnapshotRef ref;
    double worth = 0;    // GreedyDual priority
    double tokens = 0;   // the prefill it saves
    uint64_t order = 0;  // ties: older first
    PrefixTree::Node* node = nullptr;  // prefix entries
    bool heads = false;
    std::string session_id;  // session entries
    Session session;
    Clock::time_point last_used;
  };
  // (kind, worth, order, id): the first is the next to go.
  using VictimKey = std::tuple<int, double, uint64_t, int64_t>;

  // A buffer for a new entry of `kind` (evicting or spilling others), or RESOURCE_EXHAUSTED.
  absl::StatusOr<SnapshotRef> Allocate(Kind kind, double worth);
  // A new entry of `kind` saving `tokens` of prefill, holding the state of `slot`; nullopt when
  // nothing may make room for it.
  absl::StatusOr<std::optional<Entry>> Capture(Kind kind, double tokens, int slot);
  // Frees the device buffer held by `id`: moves it to the host tier when that keeps it, else
  // drops it.
  absl::Status Demote(int64_t id);
  int64_t Add(Entry entry);  // registers it; returns its id
  void Drop(int64_t id, bool evicted);
  void Touch(int64_t id);
  void Index(int64_t id, const Entry& e, bool add);
  void UpdateUsage();
  int64_t& EntryCount(Kind kind);  // the count of entries of `kind` in stats_

  Backend* backend_;
  StateStoreOptions options_;
  std::function<Clock::time_point()> now_;
  PrefixTree tree_;
  int capacity_[2] = {0, 0};
  // Free buffers, oldest first: a buffer whose entry just moved to host is reused last, by
  // which time the asynchronous copy out of it has long finished.
  std::deque<int> free_[2];
  std::set<VictimKey> victims_[2];  // evictable entries by tier
  std::unordered_map<int64_t, Entry> entries_;
  std::map<std::string, int64_t> sessions_;
  int64_t next_id_ = 0;
  uint64_t next_order_ = 0;
  uint64_t visits_ = 0;  // the prefix tree's clock
  double inflation_ = 0;
  StateStoreStats stats_;
};

}  // namespace xlserve::server
