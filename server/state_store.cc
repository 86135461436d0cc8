#include "server/state_store.h"

#include <algorithm>

namespace xlserve::server {

PrefixCache::PrefixCache(int64_t max_bytes, int min_prefix_tokens)
    : max_bytes_(max_bytes), min_prefix_tokens_(min_prefix_tokens) {}

std::optional<std::pair<int, std::shared_ptr<const StateSnapshot>>> PrefixCache::Lookup(
    std::span<const int32_t> prompt, bool heads) {
  auto best = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const size_t n = it->prefix.size();
    // A state whose heads followed the prefix serves any request; one without only plain ones.
    if (n >= prompt.size() || (heads && !it->snapshot->heads_tracked)) continue;
    if (best != entries_.end() && n <= best->prefix.size()) continue;
    if (std::equal(it->prefix.begin(), it->prefix.end(), prompt.begin())) best = it;
  }
  if (best == entries_.end()) return std::nullopt;
  entries_.splice(entries_.begin(), entries_, best);
  return std::make_pair(static_cast<int>(entries_.front().prefix.size()), entries_.front().snapshot);
}

void PrefixCache::Insert(std::vector<int32_t> prefix, std::shared_ptr<const StateSnapshot> snapshot) {
  if (snapshot->bytes() > max_bytes_) return;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->prefix == prefix && it->snapshot->heads_tracked == snapshot->heads_tracked) {
      entries_.splice(entries_.begin(), entries_, it);
      return;
    }
  }
  bytes_ += snapshot->bytes();
  entries_.push_front({std::move(prefix), std::move(snapshot)});
  while (bytes_ > max_bytes_ && !entries_.empty()) {
    bytes_ -= entries_.back().snapshot->bytes();
    entries_.pop_back();
  }
}

SessionStore::SessionStore(int max_sessions, std::chrono::seconds ttl) : max_sessions_(max_sessions), ttl_(ttl) {}

std::optional<Session> SessionStore::Get(const std::string& id, std::chrono::steady_clock::time_point now) {
  Expire(now);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  return it->second;
}

void SessionStore::Put(const std::string& id, Session session) {
  if (max_sessions_ <= 0) return;
  sessions_[id] = std::move(session);
  while (static_cast<int>(sessions_.size()) > max_sessions_) {
    auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](const auto& a, const auto& b) {
      return a.second.last_used < b.second.last_used;
    });
    sessions_.erase(oldest);
  }
}

void SessionStore::Expire(std::chrono::steady_clock::time_point now) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    it = now - it->second.last_used > ttl_ ? sessions_.erase(it) : std::next(it);
  }
}

}  // namespace xlserve::server
