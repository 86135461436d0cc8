#include "server/prefix_tree.h"

#include <algorithm>

namespace xlserve::server {

PrefixTree::PrefixTree(int64_t max_tokens) : max_tokens_(max_tokens) {}
PrefixTree::~PrefixTree() = default;

PrefixTree::Node* PrefixTree::Split(Node* node, int keep) {
  Node* parent = node->parent;
  std::unique_ptr<Node>& slot = parent->children.at(node->edge.front());
  std::unique_ptr<Node> owned = std::move(slot);
  auto middle = std::make_unique<Node>();
  middle->parent = parent;
  middle->edge.assign(node->edge.begin(), node->edge.begin() + keep);
  middle->depth = parent->depth + keep;
  middle->last_seen = node->last_seen;
  node->edge.erase(node->edge.begin(), node->edge.begin() + keep);
  node->parent = middle.get();
  Node* raw = middle.get();
  middle->children.emplace(node->edge.front(), std::move(owned));
  slot = std::move(middle);
  return raw;
}

void PrefixTree::Insert(std::span<const int32_t> prompt, uint64_t now, std::vector<Node*>* path) {
  Node* node = &root_;
  size_t at = 0;
  while (at < prompt.size()) {
    auto it = node->children.find(prompt[at]);
    if (it == node->children.end()) {
      auto leaf = std::make_unique<Node>();
      leaf->parent = node;
      leaf->edge.assign(prompt.begin() + at, prompt.end());
      leaf->depth = static_cast<int>(prompt.size());
      leaf->last_seen = now;
      tokens_ += static_cast<int64_t>(leaf->edge.size());
      Node* raw = leaf.get();
      node->children.emplace(prompt[at], std::move(leaf));
      path->push_back(raw);
      return;
    }
    Node* child = it->second.get();
    const size_t n = std::min(child->edge.size(), prompt.size() - at);
    size_t same = 0;
    while (same < n && child->edge[same] == prompt[at + same]) ++same;
    if (same < child->edge.size()) child = Split(child, static_cast<int>(same));
    child->last_seen = now;
    path->push_back(child);
    node = child;
    at += same;
  }
}

PrefixTree::Visit PrefixTree::Record(std::span<const int32_t> prompt, bool heads, int min_tokens, uint64_t now) {
  Visit visit;
  if (prompt.empty()) return visit;
  std::vector<Node*> path;
  Insert(prompt, now, &path);
  Node* end = path.back();
  const int len = static_cast<int>(prompt.size());
  for (Node* node : path) {
    const int64_t entry = node->Usable(heads);
    if (node->depth < len && entry >= 0) {
      visit.cached_depth = node->depth;
      visit.cached_entry = entry;
    }
  }
  auto worth = [&](int depth) { return depth > visit.cached_depth && depth >= min_tokens; };
  // Inside the prompt: nodes where prompts branch apart or where an earlier prompt ended,
  // lacking a usable snapshot (never taken, or evicted since).
  for (Node* node : path) {
    if (node == end || !worth(node->depth) || node->Usable(heads) >= 0) continue;
    if (node->children.size() >= 2 || node->prompts_ended > 0) visit.snapshot_points.push_back(node->depth);
  }
  if (static_cast<int>(visit.snapshot_points.size()) > kMaxInnerPoints) {
    // The deepest save the most prefill when reused.
    visit.snapshot_points.erase(visit.snapshot_points.begin(), visit.snapshot_points.end() - kMaxInnerPoints);
  }
  // A prompt seen before whole: a state one token short of it serves the next copy, which
  // still needs its last token run for logits.
  if (end->prompts_ended > 0 && worth(len - 1)) {
    const Node* before = Find(prompt.first(len - 1), now);
    if (before->Usable(heads) < 0) visit.snapshot_points.push_back(len - 1);
  }
  if (worth(len) && end->Usable(heads) < 0) visit.snapshot_points.push_back(len);
  std::sort(visit.snapshot_points.begin(), visit.snapshot_points.end());
  visit.snapshot_points.erase(std::unique(visit.snapshot_points.begin(), visit.snapshot_points.end()),
                              visit.snapshot_points.end());
  ++end->prompts_ended;
  return visit;
}

PrefixTree::Node* PrefixTree::Find(std::span<const int32_t> prefix, uint64_t now) {
  if (prefix.empty()) return &root_;
  std::vector<Node*> path;
  Insert(prefix, now, &path);
  return path.back();
}

void PrefixTree::Prune() {
  if (tokens_ <= max_tokens_) return;
  const int64_t target = max_tokens_ - max_tokens_ / 10;
  // Leaves without entries, oldest first; a parent that becomes such a leaf joins the queue.
  auto removable = [](const Node* n) { return n->children.empty() && n->entry[0] < 0 && n->entry[1] < 0; };
  std::vector<Node*> leaves;
  std::vector<Node*> stack = {&root_};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& [id, child] : n->children) {
      if (removable(child.get())) leaves.push_back(child.get());
      stack.push_back(child.get());
    }
  }
  auto newer = [](const Node* a, const Node* b) { return a->last_seen > b->last_seen; };
  std::make_heap(leaves.begin(), leaves.end(), newer);
  while (tokens_ > target && !leaves.empty()) {
    std::pop_heap(leaves.begin(), leaves.end(), newer);
    Node* leaf = leaves.back();
    leaves.pop_back();
    Node* parent = leaf->parent;
    tokens_ -= static_cast<int64_t>(leaf->edge.size());
    parent->children.erase(leaf->edge.front());
    if (parent != &root_ && removable(parent)) {
      leaves.push_back(parent);
      std::push_heap(leaves.begin(), leaves.end(), newer);
    }
  }
}

}  // namespace xlserve::server
