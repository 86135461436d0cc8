// `xlserve tokenize` and `xlserve detokenize`: a tokenizer.json applied from the command line.
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flags.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace xlserve::cli {
namespace {

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("--tokenizer FILE is required");
  return Tokenizer::FromFile(path);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct TokenizeSettings {
  std::string tokenizer;
  std::optional<std::string> text;
  std::optional<std::string> text_file;
  bool print_json = false;
};

const settings::SettingsTable<TokenizeSettings>& TokenizeSettingsTable() {
  using T = TokenizeSettings;
  static const settings::SettingsTable<TokenizeSettings> table = {
      {"tokenizer", &T::tokenizer, "path of tokenizer.json"},
      {"text", &T::text, "text to encode"},
      {"text_file", &T::text_file, "file whose bytes are encoded"},
      {"print_json", &T::print_json, "print {\"ids\": [...]}"},
  };
  return table;
}

struct DetokenizeSettings {
  std::string tokenizer;
  std::optional<std::vector<int>> ids;
  bool skip_special = false;
  bool print_json = false;
};

const settings::SettingsTable<DetokenizeSettings>& DetokenizeSettingsTable() {
  using D = DetokenizeSettings;
  static const settings::SettingsTable<DetokenizeSettings> table = {
      {"tokenizer", &D::tokenizer, "path of tokenizer.json"},
      {"ids", &D::ids, "comma-separated token ids"},
      {"skip_special", &D::skip_special, "leave special tokens out of the text"},
      {"print_json", &D::print_json, "print {\"text\": \"...\"}"},
  };
  return table;
}

}  // namespace

int RunTokenize(const std::vector<std::string>& args) {
  TokenizeSettings f;
  FlagSet flags("xlserve tokenize", "--tokenizer FILE (--text TEXT | --text-file FILE) [--print-json]",
                "Encodes text into token ids with a Hugging Face tokenizer.json (byte-level BPE).\n"
                "Special tokens written in the text are recognised; no BOS/EOS is added.");
  flags.Add(TokenizeSettingsTable(), &f);
  std::optional<std::string>& text = f.text;
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("tokenize", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (text.has_value() == f.text_file.has_value()) {
    return ReportError("tokenize", "give exactly one of --text and --text-file");
  }
  if (f.text_file) {
    absl::StatusOr<std::string> content = ReadFile(*f.text_file);
    if (!content.ok()) return ReportError("tokenize", std::string(content.status().message()));
    text = std::move(*content);
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Load(f.tokenizer);
  if (!tokenizer.ok()) return ReportError("tokenize", std::string(tokenizer.status().message()));
  absl::StatusOr<std::vector<int>> ids = (*tokenizer)->Encode(*text);
  if (!ids.ok()) return ReportError("tokenize", std::string(ids.status().message()));
  if (f.print_json) {
    std::puts(nlohmann::json{{"ids", *ids}}.dump().c_str());
  } else {
    std::string line;
    for (size_t i = 0; i < ids->size(); ++i) line += (i ? " " : "") + std::to_string((*ids)[i]);
    std::puts(line.c_str());
  }
  return 0;
}

int RunDetokenize(const std::vector<std::string>& args) {
  DetokenizeSettings f;
  FlagSet flags("xlserve detokenize", "--tokenizer FILE --ids 1,2,3 [--print-json]",
                "Decodes token ids into text with a Hugging Face tokenizer.json.");
  flags.Add(DetokenizeSettingsTable(), &f);
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("detokenize", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (!f.ids) return ReportError("detokenize", "--ids is required");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Load(f.tokenizer);
  if (!tokenizer.ok()) return ReportError("detokenize", std::string(tokenizer.status().message()));
  absl::StatusOr<std::string> text = (*tokenizer)->Decode(*f.ids, f.skip_special);
  if (!text.ok()) return ReportError("detokenize", std::string(text.status().message()));
  if (f.print_json) {
    std::puts(nlohmann::json{{"text", *text}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::fwrite(text->data(), 1, text->size(), stdout);
    std::fputs("\n", stdout);
  }
  return 0;
}

}  // namespace xlserve::cli
