// Host-memory copies of recurrent states that outlive a request: the prefix cache (states
// after exact token prefixes) and sessions (the state a conversation left). A recurrent state
// has a fixed size, so restoring one is a single copy instead of re-running the tokens.
// Used by the scheduler thread only (not thread-safe).
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace xlserve::server {

struct StateSnapshot {
  std::vector<float> state;  // Backend::ReadSlot layout
  bool heads_tracked = false;  // whether the MTP heads' states followed every token
  int64_t bytes() const { return static_cast<int64_t>(state.size() * sizeof(float)); }
};

// LRU cache keyed by exact token prefixes, bounded in bytes.
class PrefixCache {
 public:
  PrefixCache(int64_t max_bytes, int min_prefix_tokens);

  // The longest cached prefix strictly shorter than `prompt` (at least one token must remain
  // to produce logits) usable by a request that needs (`heads`) or not its MTP heads' states.
  std::optional<std::pair<int, std::shared_ptr<const StateSnapshot>>> Lookup(std::span<const int32_t> prompt,
                                                                             bool heads);
  // Stores the state after `prefix`; evicts least recently used entries beyond the bound.
  void Insert(std::vector<int32_t> prefix, std::shared_ptr<const StateSnapshot> snapshot);
  bool WorthCaching(int prefix_tokens) const { return max_bytes_ > 0 && prefix_tokens >= min_prefix_tokens_; }
  int size() const { return static_cast<int>(entries_.size()); }

 private:
  struct Entry {
    std::vector<int32_t> prefix;
    std::shared_ptr<const StateSnapshot> snapshot;
  };
  int64_t max_bytes_;
  int min_prefix_tokens_;
  int64_t bytes_ = 0;
  std::list<Entry> entries_;  // front: most recently used
};

struct Session {
  std::shared_ptr<const StateSnapshot> snapshot;
  int32_t pending_token = -1;  // emitted last turn, not yet in the state
  int history_tokens = 0;      // tokens the state has seen
  std::chrono::steady_clock::time_point last_used;
};

// Sessions by id, bounded in count (least recently used goes first) and by idle time.
class SessionStore {
 public:
  SessionStore(int max_sessions, std::chrono::seconds ttl);

  std::optional<Session> Get(const std::string& id, std::chrono::steady_clock::time_point now);
  void Put(const std::string& id, Session session);
  void Expire(std::chrono::steady_clock::time_point now);
  int size() const { return static_cast<int>(sessions_.size()); }

 private:
  int max_sessions_;
  std::chrono::seconds ttl_;
  std::map<std::string, Session> sessions_;
};

}  // namespace xlserve::server
