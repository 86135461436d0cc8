#include "server/state_store.h"

#include <algorithm>

#include "base/status_macros.h"

namespace xlserve::server {
namespace {

constexpr int kDevice = static_cast<int>(SnapshotTier::kDevice);
constexpr int kHost = static_cast<int>(SnapshotTier::kHost);
// Device buffers kept free ahead of need (at most an eighth of the tier).
constexpr int kSpillAhead = 8;

}  // namespace

StateStore::StateStore(Backend* backend, const StateStoreOptions& options, std::function<Clock::time_point()> now)
    : backend_(backend),
      options_(options),
      now_(now ? std::move(now) : [] { return Clock::now(); }),
      tree_(options.max_tree_tokens) {}

absl::Status StateStore::Init() {
  const int64_t bytes = backend_->snapshot_bytes();
  if (bytes <= 0) return absl::FailedPreconditionError("the backend reports no snapshot size");
  const int64_t limits[2] = {options_.device_bytes, options_.host_bytes};
  for (int t : {kDevice, kHost}) {
    capacity_[t] = static_cast<int>(std::min<int64_t>(limits[t] / bytes, 1 << 30));
    free_[t].clear();
    for (int i = 0; i < capacity_[t]; ++i) free_[t].push_back(i);
    stats_.capacity_bytes[t] = capacity_[t] * bytes;
  }
  return backend_->AllocateSnapshots(capacity_[kDevice], capacity_[kHost]);
}

void StateStore::Index(int64_t id, const Entry& e, bool add) {
  if (e.kind == Kind::kSwapped) return;
  const VictimKey key{static_cast<int>(e.kind), e.worth, e.order, id};
  auto& set = victims_[static_cast<int>(e.ref.tier)];
  if (add) {
    set.insert(key);
  } else {
    set.erase(key);
  }
}

int64_t StateStore::Add(Entry entry) {
  const int64_t id = next_id_++;
  entry.order = next_order_++;
  entry.last_used = now_();
  Index(id, entry, true);
  ++EntryCount(entry.kind);
  entries_.emplace(id, std::move(entry));
  ++stats_.saves;
  UpdateUsage();
  return id;
}

void StateStore::Touch(int64_t id) {
  Entry& e = entries_.at(id);
  Index(id, e, false);
  e.worth = inflation_ + e.tokens;
  e.order = next_order_++;
  e.last_used = now_();
  Index(id, e, true);
}

void StateStore::Drop(int64_t id, bool evicted) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  Index(id, e, false);
  if (e.node) e.node->entry[e.heads ? 1 : 0] = -1;
  if (e.kind == Kind::kSession) sessions_.erase(e.session_id);
  const int tier = static_cast<int>(e.ref.tier);
  free_[tier].push_back(e.ref.index);
  if (evicted) ++stats_.evictions[tier];
  --EntryCount(e.kind);
  entries_.erase(it);
  UpdateUsage();
}

int64_t& StateStore::EntryCount(Kind kind) {
  return kind == Kind::kPrefix ? stats_.prefix_entries
         : kind == Kind::kSession ? stats_.session_entries
                                  : stats_.swapped_entries;
}

// Constant time: it runs on the engine thread at every save, drop and spill, several times a
// save once the store is full, when walking the entries (~1,900 at the 7B shape) grew with it.
void StateStore::UpdateUsage() {
  const int64_t bytes = backend_->snapshot_bytes();
  for (int t : {kDevice, kHost}) stats_.used_bytes[t] = (capacity_[t] - static_cast<int64_t>(free_[t].size())) * bytes;
  stats_.tree_tokens = tree_.tokens();
}

absl::Status StateStore::Demote(int64_t id) {
  Entry& e = entries_.at(id);
  inflation_ = std::max(inflation_, e.worth);
  // A host buffer: a free one, else one whose entry is worth less (sessions outrank prefixes).
  if (free_[kHost].empty() && !victims_[kHost].empty()) {
    const VictimKey& v = *victims_[kHost].begin();
    const bool cheaper = std::get<0>(v) < static_cast<int>(e.kind) ||
                         (std::get<0>(v) == static_cast<int>(e.kind) && std::get<1>(v) <= e.worth);
    if (cheaper) Drop(std::get<3>(v), true);
  }
  if (free_[kHost].empty()) {
    Drop(id, true);
    return absl::OkStatus();
  }
  const SnapshotRef to{SnapshotTier::kHost, free_[kHost].front()};
  free_[kHost].pop_front();
  RETURN_IF_ERROR(backend_->CopySnapshot(e.ref, to));
  Index(id, e, false);
  free_[kDevice].push_back(e.ref.index);
  e.ref = to;
  Index(id, e, true);
  ++stats_.spills;
  UpdateUsage();
  return absl::OkStatus();
}

absl::StatusOr<SnapshotRef> StateStore::Allocate(Kind kind, double worth) {
  const int rank = static_cast<int>(kind);
  for (int t : {kDevice, kHost}) {
    if (capacity_[t] == 0) continue;
    if (free_[t].empty() && !victims_[t].empty()) {
      const VictimKey v = *victims_[t].begin();
      const bool may = std::get<0>(v) <= rank || kind == Kind::kSwapped;
      if (may && t == kDevice) {
        RETURN_IF_ERROR(Demote(std::get<3>(v)));
      } else if (may && (std::get<0>(v) < rank || std::get<1>(v) <= worth || kind == Kind::kSwapped)) {
        inflation_ = std::max(inflation_, std::get<1>(v));
        Drop(std::get<3>(v), true);
      }
    }
    if (!free_[t].empty()) {
      const int index = free_[t].front();
      free_[t].pop_front();
      if (t == kDevice) {
        // Spill early: the buffers freed now are the ones reused kSpillAhead saves later.
        const int ahead = std::min(kSpillAhead, capacity_[kDevice] / 8);
        while (static_cast<int>(free_[kDevice].size()) < ahead && !victims_[kDevice].empty() && capacity_[kHost] > 0) {
          RETURN_IF_ERROR(Demote(std::get<3>(*victims_[kDevice].begin())));
        }
      }
      return SnapshotRef{static_cast<SnapshotTier>(t), index};
    }
  }
  return absl::ResourceExhaustedError("the state store has no buffer to spare");
}

absl::StatusOr<std::optional<StateStore::Entry>> StateStore::Capture(Kind kind, double tokens, int slot) {
  absl::StatusOr<SnapshotRef> ref = Allocate(kind, inflation_ + tokens);
  if (!ref.ok()) return std::optional<Entry>();
  RETURN_IF_ERROR(backend_->SaveSnapshot(slot, *ref));
  Entry e;
  e.kind = kind;
  e.ref = *ref;
  e.tokens = tokens;
  e.worth = inflation_ + tokens;
  return std::optional<Entry>(std::move(e));
}

absl::StatusOr<StateStore::PromptPlan> StateStore::BeginPrompt(std::span<const int32_t> prompt, bool heads,
                                                               int slot) {
  PromptPlan plan;
  if (!enabled()) return plan;
  const PrefixTree::Visit visit = tree_.Record(prompt, heads, options_.min_prefix_tokens, ++visits_);
  ++stats_.prefix_lookups;
  plan.snapshot_points = visit.snapshot_points;
  if (visit.cached_entry >= 0) {
    const Entry& e = entries_.at(visit.cached_entry);
    RETURN_IF_ERROR(backend_->RestoreSnapshot(e.ref, slot));
    ++stats_.restores[static_cast<int>(e.ref.tier)];
    ++stats_.prefix_hits;
    stats_.prefix_hit_tokens += visit.cached_depth;
    Touch(visit.cached_entry);
    plan.cached_tokens = visit.cached_depth;
  }
  tree_.Prune();
  stats_.tree_tokens = tree_.tokens();
  return plan;
}

absl::Status StateStore::SavePrefix(std::span<const int32_t> prefix, bool heads, int slot) {
  if (!enabled() || static_cast<int>(prefix.size()) < options_.min_prefix_tokens) return absl::OkStatus();
  PrefixTree::Node* node = tree_.Find(prefix, ++visits_);
  if (node->entry[heads ? 1 : 0] >= 0) {
    Touch(node->entry[heads ? 1 : 0]);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::optional<Entry> e, Capture(Kind::kPrefix, static_cast<double>(prefix.size()), slot));
  if (!e) return absl::OkStatus();  // everything kept is worth more: not cached
  // (Making room drops entries, never tree nodes: `node` is still valid.)
  e->node = node;
  e->heads = heads;
  node->entry[heads ? 1 : 0] = Add(std::move(*e));
  return absl::OkStatus();
}

void StateStore::ExpireSessions() {
  const Clock::time_point now = now_();
  std::vector<int64_t> old;
  for (const auto& [id, entry_id] : sessions_) {
    if (now - entries_.at(entry_id).last_used > options_.session_ttl) old.push_back(entry_id);
  }
  for (int64_t id : old) Drop(id, false);
}

absl::StatusOr<std::optional<StateStore::Session>> StateStore::RestoreSession(const std::string& id, int slot) {
  ExpireSessions();
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::optional<Session>();
  const int64_t entry_id = it->second;
  const Entry& e = entries_.at(entry_id);
  RETURN_IF_ERROR(backend_->RestoreSnapshot(e.ref, slot));
  ++stats_.restores[static_cast<int>(e.ref.tier)];
  const Session session = e.session;
  Touch(entry_id);
  return std::optional<Session>(session);
}

absl::Status StateStore::SaveSession(const std::string& id, const Session& session, int slot) {
  if (!enabled() || options_.max_sessions <= 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::optional<Entry> e, Capture(Kind::kSession, session.history_tokens, slot));
  if (!e) return absl::OkStatus();  // the store is full of preempted sequences
  if (auto old = sessions_.find(id); old != sessions_.end()) Drop(old->second, false);
  e->session_id = id;
  e->session = session;
  sessions_[id] = Add(std::move(*e));
  if (static_cast<int>(sessions_.size()) > options_.max_sessions) {
    auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [&](const auto& a, const auto& b) {
      return entries_.at(a.second).last_used < entries_.at(b.second).last_used;
    });
    Drop(oldest->second, true);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> StateStore::SaveSwapped(int slot) {
  ASSIGN_OR_RETURN(std::optional<Entry> e, Capture(Kind::kSwapped, 0, slot));
  if (!e) return absl::ResourceExhaustedError("the state store has no buffer to spare");
  return Add(std::move(*e));
}

absl::Status StateStore::RestoreSwapped(int64_t id, int slot) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.kind != Kind::kSwapped) {
    return absl::NotFoundError("no preempted state " + std::to_string(id));
  }
  RETURN_IF_ERROR(backend_->RestoreSnapshot(it->second.ref, slot));
  ++stats_.restores[static_cast<int>(it->second.ref.tier)];
  Drop(id, false);
  return absl::OkStatus();
}

void StateStore::DropSwapped(int64_t id) { Drop(id, false); }

}  // namespace xlserve::server
