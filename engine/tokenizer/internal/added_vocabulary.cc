#include "engine/tokenizer/internal/added_vocabulary.h"

#include <algorithm>

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/internal/utf8.h"

namespace xlserve::tokenizer_internal {
namespace {

struct Found {
  std::size_t begin;
  std::size_t end;
  int token;  // index into tokens_
};

// What HF tests with Rust's Unicode functions, from ICU's properties: single_word asks its
// regex crate's \w (Alphabetic, marks, decimal digits, connector punctuation, joiners), lstrip
// and rstrip char::is_whitespace (White_Space).
bool IsWordChar(UChar32 c) {
  return u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL) ||
         (U_GET_GC_MASK(c) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

bool IsWhiteSpace(UChar32 c) { return u_hasBinaryProperty(c, UCHAR_WHITE_SPACE); }

// The code point that ends at byte `*end` (> 0) of valid UTF-8 `text`; moves `*end` to its start.
UChar32 PreviousChar(std::string_view text, int32_t* end) {
  UChar32 c;
  U8_PREV(reinterpret_cast<const uint8_t*>(text.data()), 0, *end, c);
  return c;
}

// The code point that starts at byte `*begin` of valid UTF-8 `text`; moves `*begin` past it.
UChar32 NextChar(std::string_view text, int32_t* begin) {
  UChar32 c;
  U8_NEXT(reinterpret_cast<const uint8_t*>(text.data()), *begin, static_cast<int32_t>(text.size()), c);
  return c;
}

// Start of the run of white space that ends at `end`.
std::size_t WhiteSpaceRunStart(std::string_view text, std::size_t end) {
  int32_t at = static_cast<int32_t>(end);
  while (at > 0) {
    int32_t before = at;
    if (!IsWhiteSpace(PreviousChar(text, &before))) break;
    at = before;
  }
  return static_cast<std::size_t>(at);
}

// End of the run of white space that starts at `begin`.
std::size_t WhiteSpaceRunEnd(std::string_view text, std::size_t begin) {
  int32_t at = static_cast<int32_t>(begin);
  while (at < static_cast<int32_t>(text.size())) {
    int32_t after = at;
    if (!IsWhiteSpace(NextChar(text, &after))) break;
    at = after;
  }
  return static_cast<std::size_t>(at);
}

bool GetFlag(const nlohmann::json& entry, const char* key, bool fallback) {
  const auto it = entry.find(key);
  return it != entry.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

}  // namespace

absl::StatusOr<AddedVocabulary> AddedVocabulary::FromJson(
    const nlohmann::json& added_tokens, absl::StatusOr<std::string> (*normalize)(std::string_view)) {
  AddedVocabulary vocab;
  if (added_tokens.is_null()) return vocab;
  if (!added_tokens.is_array()) {
    return absl::InvalidArgumentError("tokenizer.json added_tokens is not an array");
  }
  for (std::size_t i = 0; i < added_tokens.size(); ++i) {
    const nlohmann::json& entry = added_tokens[i];
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer() ||
        !entry.contains("content") || !entry["content"].is_string() ||
        entry["id"].get<long long>() < 0 || entry["id"].get<long long>() > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer.json added_tokens[", i, "] needs an integer \"id\" and a \"content\""));
    }
    AddedToken token;
    token.content = entry["content"].get<std::string>();
    token.id = entry["id"].get<int>();
    token.special = GetFlag(entry, "special", false);
    token.single_word = GetFlag(entry, "single_word", false);
    token.lstrip = GetFlag(entry, "lstrip", false);
    token.rstrip = GetFlag(entry, "rstrip", false);
    token.normalized = GetFlag(entry, "normalized", !token.special);
    std::vector<char32_t> unused;
    if (!DecodeUtf8(token.content, &unused, nullptr).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json added_tokens[", i, "].content is not valid UTF-8"));
    }
    if (token.content.empty()) continue;  // HF ignores empty added tokens
    // HF stores a normalized token in normalized form: that is what it matches, and what its
    // id decodes to.
    if (token.normalized && normalize != nullptr) {
      absl::StatusOr<std::string> normalized = normalize(token.content);
      if (!normalized.ok()) return normalized.status();
      token.content = std::move(*normalized);
    }
    vocab.tokens_.push_back(std::move(token));
  }
  for (int i = 0; i < static_cast<int>(vocab.tokens_.size()); ++i) {
    const AddedToken& token = vocab.tokens_[i];
    vocab.candidates_[token.normalized ? 1 : 0][static_cast<unsigned char>(token.content[0])]
        .push_back(i);
  }
  for (auto& pass : vocab.candidates_) {
    for (auto& order : pass) {
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return vocab.tokens_[a].content.size() > vocab.tokens_[b].content.size();
      });
    }
  }
  return vocab;
}

void AddedVocabulary::Split(std::string_view text, bool normalized_pass,
                            std::vector<Segment>* segments) const {
  const std::vector<int>(&candidates)[256] = candidates_[normalized_pass ? 1 : 0];
  // Leftmost-longest, non-overlapping matches (what HF's Aho-Corasick automaton reports).
  std::vector<Found> found;
  for (std::size_t pos = 0; pos < text.size();) {
    int hit = -1;
    for (int index : candidates[static_cast<unsigned char>(text[pos])]) {
      const std::string& content = tokens_[index].content;
      if (text.compare(pos, content.size(), content) == 0) {
        hit = index;
        break;
      }
    }
    if (hit < 0) {
      ++pos;
      continue;
    }
    found.push_back({pos, pos + tokens_[hit].content.size(), hit});
    pos += tokens_[hit].content.size();
  }
  // Word and whitespace options are applied afterwards, as HF does: a match dropped for
  // single_word does not let an overlapping token match instead.
  std::size_t consumed = 0;
  for (Found f : found) {
    const AddedToken& token = tokens_[f.token];
    if (token.single_word) {
      int32_t before = static_cast<int32_t>(f.begin), after = static_cast<int32_t>(f.end);
      const bool word_before = f.begin > 0 && IsWordChar(PreviousChar(text, &before));
      const bool word_after = f.end < text.size() && IsWordChar(NextChar(text, &after));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) f.begin = std::max(WhiteSpaceRunStart(text, f.begin), consumed);
    if (token.rstrip) f.end = WhiteSpaceRunEnd(text, f.end);
    if (f.begin > consumed) segments->push_back({text.substr(consumed, f.begin - consumed), -1});
    segments->push_back({text.substr(f.begin, f.end - f.begin), token.id});
    consumed = f.end;
  }
  if (consumed < text.size()) segments->push_back({text.substr(consumed), -1});
}

}  // namespace xlserve::tokenizer_internal
