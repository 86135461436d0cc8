// PrefixTree: a radix tree over the token ids of the prompts the server has seen, on whose
// nodes the state store hangs its prefix snapshots.
//
// Each edge holds a run of token ids; a node stands for the prefix spelt by the path from the
// root to it. A node holds up to two snapshot entries (the state after exactly that prefix,
// with and without the MTP heads' states) and remembers how many prompts ended there and when
// a prompt last passed through. Recording a prompt walks it once (O(prompt length) map steps)
// and reports both the longest prefix with a usable snapshot and the places where a snapshot
// is likely to be reused: points where prompts branch apart (a prefix seen by two prompts is
// likely to be seen by a third), the end of a prompt that came before, and the prompt's end.
// The tree remembers at most `max_tokens` ids; beyond that, Prune forgets the least recently
// seen branches that hold no snapshot. Not thread-safe (the scheduler thread owns it).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

namespace xlserve::server {

class PrefixTree {
 public:
  struct Node {
    Node* parent = nullptr;
    std::vector<int32_t> edge;  // the ids from the parent to this node
    std::map<int32_t, std::unique_ptr<Node>> children;  // by the first id of their edge
    int depth = 0;               // ids from the root
    int64_t entry[2] = {-1, -1};  // the store's snapshot entries: [0] plain, [1] heads tracked
    int prompts_ended = 0;       // prompts that ended exactly here
    uint64_t last_seen = 0;
    // An entry usable by a request that needs (`heads`) or not the heads' states: a state
    // whose heads followed the prefix also serves plain requests.
    int64_t Usable(bool heads) const { return entry[1] >= 0 ? entry[1] : heads ? -1 : entry[0]; }
  };

  struct Visit {
    int cached_depth = 0;      // longest prefix shorter than the prompt with a usable entry
    int64_t cached_entry = -1;  // its entry (-1: none)
    // Depths beyond cached_depth, ascending, where a snapshot is worth taking (the prompt's
    // length included when it is long enough).
    std::vector<int> snapshot_points;
  };

  // At most this many snapshot points inside a prompt (besides its end): each one splits the
  // prompt's prefill at that point.
  static constexpr int kMaxInnerPoints = 4;

  explicit PrefixTree(int64_t max_tokens);
  ~PrefixTree();

  // Records `prompt` as seen at `now` and says what to restore and where to snapshot for a
  // request that needs the heads' states (`heads`) or not; points shorter than `min_tokens`
  // are not worth a snapshot.
  Visit Record(std::span<const int32_t> prompt, bool heads, int min_tokens, uint64_t now);
  // The node of exactly `prefix`, made if missing (splitting an edge); never null for a
  // non-empty prefix.
  Node* Find(std::span<const int32_t> prefix, uint64_t now);
  // Forgets the least recently seen leaves without entries while the tree holds more than
  // max_tokens ids (down to 90%, so that pruning is rare).
  void Prune();

  int64_t tokens() const { return tokens_; }
  int64_t max_tokens() const { return max_tokens_; }

 private:
  // Splits `node`'s edge after `keep` ids: a new node takes the first part and becomes
  // `node`'s parent. Returns the new node.
  Node* Split(Node* node, int keep);
  // Walks `prompt` from the root as far as the tree spells it, splitting an edge where the
  // prompt leaves it mid-way, and appends the rest as a new leaf. `path` gets every node on
  // the way, root excluded, the last one being the prompt's own.
  void Insert(std::span<const int32_t> prompt, uint64_t now, std::vector<Node*>* path);

  Node root_;
  int64_t max_tokens_;
  int64_t tokens_ = 0;
};

}  // namespace xlserve::server
