#include "engine/tokenizer/internal/pre_tokenizer.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/internal/regex.h"
#include "base/status_macros.h"

namespace xlserve::tokenizer_internal {
namespace {

using nlohmann::json;

// The pattern HF's ByteLevel pre-tokenizer uses when use_regex is true (GPT-2's).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A piece of the current string: byte range and whether the pattern matched it.
struct Span {
  std::size_t begin;
  std::size_t end;
  bool is_match;
};

// Applies HF's SplitDelimiterBehavior to spans that cover a string in order.
std::vector<Span> ApplyBehavior(std::vector<Span> spans, SplitBehavior behavior) {
  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      return spans;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) {
        if (!s.is_match) out.push_back(s);
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back(*it);
        }
        previous_match = it->is_match;
      }
      return {out.rbegin(), out.rend()};
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
  }
  return spans;
}

// Cuts each piece at the spans a matcher reports, then applies the behaviour.
template <typename FindSpans>
absl::Status SplitPieces(std::vector<std::string>* pieces, SplitBehavior behavior, bool invert,
                         const FindSpans& find_spans) {
  std::vector<std::string> out;
  out.reserve(pieces->size() * 2);
  for (const std::string& piece : *pieces) {
    std::vector<Span> spans;
    RETURN_IF_ERROR(find_spans(piece, &spans));
    if (invert) {
      for (Span& s : spans) s.is_match = !s.is_match;
    }
    for (const Span& s : ApplyBehavior(std::move(spans), behavior)) {
      if (s.end > s.begin) out.push_back(piece.substr(s.begin, s.end - s.begin));
    }
  }
  *pieces = std::move(out);
  return absl::OkStatus();
}

// Adds the matched/unmatched spans for `matches` (ascending, non-overlapping byte ranges).
void CoverWithSpans(std::size_t length,
                    const std::vector<std::pair<std::size_t, std::size_t>>& matches,
                    std::vector<Span>* spans) {
  std::size_t previous = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > previous) spans->push_back({previous, begin, false});
    spans->push_back({begin, end, true});
    previous = end;
  }
  if (previous < length) spans->push_back({previous, length, false});
}

absl::Status RegexSpans(const Regex& regex, const std::string& piece, std::vector<Span>* spans) {
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  RETURN_IF_ERROR(regex.FindAll(piece, &matches));
  CoverWithSpans(piece.size(), matches, spans);
  return absl::OkStatus();
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  absl::Status Apply(std::vector<std::string>* pieces) const override {
    if (add_prefix_space_) {
      for (std::string& piece : *pieces) {
        if (piece.empty() || piece[0] != ' ') piece.insert(piece.begin(), ' ');
      }
    }
    if (!regex_) return absl::OkStatus();
    return SplitPieces(pieces, SplitBehavior::kIsolated, false,
                       [this](const std::string& piece, std::vector<Span>* spans) {
                         return RegexSpans(*regex_, piece, spans);
                       });
  }
  bool IsByteLevel() const override { return true; }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::optional<Regex> regex, std::string literal, SplitBehavior behavior,
                    bool invert)
      : regex_(std::move(regex)),
        literal_(std::move(literal)),
        behavior_(behavior),
        invert_(invert) {}

  absl::Status Apply(std::vector<std::string>* pieces) const override {
    return SplitPieces(pieces, behavior_, invert_,
                       [this](const std::string& piece, std::vector<Span>* spans) {
                         if (regex_) return RegexSpans(*regex_, piece, spans);
                         LiteralSpans(piece, spans);
                         return absl::OkStatus();
                       });
  }
  bool IsByteLevel() const override { return false; }

 private:
  void LiteralSpans(const std::string& piece, std::vector<Span>* spans) const {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    if (!literal_.empty()) {
      for (std::size_t at = piece.find(literal_); at != std::string::npos;
           at = piece.find(literal_, at + literal_.size())) {
        matches.emplace_back(at, at + literal_.size());
      }
    }
    CoverWithSpans(piece.size(), matches, spans);
  }

  std::optional<Regex> regex_;
  std::string literal_;
  SplitBehavior behavior_;
  bool invert_;
};

// Splits at each character HF's Digits tests with Rust's char::is_numeric (general category
// Nd, Nl or No, from ICU).
class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}

  absl::Status Apply(std::vector<std::string>* pieces) const override {
    return SplitPieces(pieces, individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false,
                       [](const std::string& piece, std::vector<Span>* spans) {
                         std::vector<std::pair<std::size_t, std::size_t>> matches;
                         const auto* bytes = reinterpret_cast<const uint8_t*>(piece.data());
                         const int32_t length = static_cast<int32_t>(piece.size());
                         for (int32_t at = 0; at < length;) {
                           const int32_t begin = at;
                           UChar32 c;
                           U8_NEXT(bytes, at, length, c);
                           if (U_GET_GC_MASK(c) & U_GC_N_MASK) matches.emplace_back(begin, at);
                         }
                         CoverWithSpans(piece.size(), matches, spans);
                         return absl::OkStatus();
                       });
  }
  bool IsByteLevel() const override { return false; }

 private:
  bool individual_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}

  absl::Status Apply(std::vector<std::string>* pieces) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->Apply(pieces));
    return absl::OkStatus();
  }
  bool IsByteLevel() const override {
    for (const auto& step : steps_) {
      if (step->IsByteLevel()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

absl::StatusOr<SplitBehavior> ParseBehavior(const json& config, const std::string& where) {
  const std::string name = config.value("behavior", std::string("Isolated"));
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json ", where, ".behavior \"", name, "\" is unsupported"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> Build(const json& config, const std::string& where) {
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json ", where, " has no \"type\""));
  }
  const std::string type = config["type"].get<std::string>();
  if (type == "ByteLevel") {
    std::optional<Regex> regex;
    if (config.value("use_regex", true)) {
      auto compiled = Regex::Compile(kGpt2Pattern);
      if (!compiled.ok()) return compiled.status();
      regex = std::move(*compiled);
    }
    return std::make_unique<ByteLevelPreTokenizer>(config.value("add_prefix_space", true),
                                                   std::move(regex));
  }
  if (type == "Split") {
    ASSIGN_OR_RETURN(const SplitBehavior behavior, ParseBehavior(config, where));
    const bool invert = config.value("invert", false);
    const auto pattern = config.find("pattern");
    if (pattern == config.end() || !pattern->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json ", where, ".pattern is missing"));
    }
    if (pattern->contains("Regex") && (*pattern)["Regex"].is_string()) {
      auto compiled = Regex::Compile((*pattern)["Regex"].get<std::string>());
      if (!compiled.ok()) {
        return absl::Status(
            compiled.status().code(),
            absl::StrCat("tokenizer.json ", where, ".pattern: ", compiled.status().message()));
      }
      return std::make_unique<SplitPreTokenizer>(std::move(*compiled), "", behavior, invert);
    }
    if (pattern->contains("String") && (*pattern)["String"].is_string()) {
      return std::make_unique<SplitPreTokenizer>(
          std::nullopt, (*pattern)["String"].get<std::string>(), behavior, invert);
    }
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json ", where, ".pattern needs a \"Regex\" or \"String\""));
  }
  if (type == "Digits") {
    return std::make_unique<DigitsPreTokenizer>(config.value("individual_digits", false));
  }
  if (type == "Sequence") {
    const auto list = config.find("pretokenizers");
    if (list == config.end() || !list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json ", where, ".pretokenizers is missing"));
    }
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (std::size_t i = 0; i < list->size(); ++i) {
      auto step = Build((*list)[i], absl::StrCat(where, ".pretokenizers[", i, "]"));
      if (!step.ok()) return step.status();
      steps.push_back(std::move(*step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json ", where, " of type \"", type, "\" is unsupported"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const json& config) {
  if (config.is_null()) {
    return absl::UnimplementedError(
        "tokenizer.json pre_tokenizer is null; only byte-level BPE (with a ByteLevel "
        "pre-tokenizer) is supported");
  }
  auto built = Build(config, "pre_tokenizer");
  if (!built.ok()) return built.status();
  if (!(*built)->IsByteLevel()) {
    return absl::UnimplementedError(
        "tokenizer.json pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");
  }
  return built;
}

}  // namespace xlserve::tokenizer_internal
