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

}  // namespace

int RunTokenize(const std::vector<std::string>& args) {
  std::string tokenizer_path;
  std::optional<std::string> text;
  std::optional<std::string> text_file;
  bool json = false;
  FlagSet flags("xlserve tokenize", "--tokenizer FILE (--text TEXT | --text-file FILE) [--json]",
                "Encodes text into token ids with a Hugging Face tokenizer.json (byte-level BPE).\n"
                "Special tokens written in the text are recognised; no BOS/EOS is added.");
  flags.AddString("tokenizer", &tokenizer_path, "path of tokenizer.json");
  flags.AddOptionalString("text", &text, "text to encode");
  flags.AddOptionalString("text-file", &text_file, "file whose bytes are encoded");
  flags.AddBool("json", &json, "print {\"ids\": [...]}");
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("tokenize", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (text.has_value() == text_file.has_value()) {
    return ReportError("tokenize", "give exactly one of --text and --text-file");
  }
  if (text_file) {
    absl::StatusOr<std::string> content = ReadFile(*text_file);
    if (!content.ok()) return ReportError("tokenize", std::string(content.status().message()));
    text = std::move(*content);
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Load(tokenizer_path);
  if (!tokenizer.ok()) return ReportError("tokenize", std::string(tokenizer.status().message()));
  absl::StatusOr<std::vector<int>> ids = (*tokenizer)->Encode(*text);
  if (!ids.ok()) return ReportError("tokenize", std::string(ids.status().message()));
  if (json) {
    std::puts(nlohmann::json{{"ids", *ids}}.dump().c_str());
  } else {
    std::string line;
    for (size_t i = 0; i < ids->size(); ++i) line += (i ? " " : "") + std::to_string((*ids)[i]);
    std::puts(line.c_str());
  }
  return 0;
}

int RunDetokenize(const std::vector<std::string>& args) {
  std::string tokenizer_path;
  std::optional<std::vector<int>> ids;
  bool json = false;
  bool skip_special = false;
  FlagSet flags("xlserve detokenize", "--tokenizer FILE --ids 1,2,3 [--json]",
                "Decodes token ids into text with a Hugging Face tokenizer.json.");
  flags.AddString("tokenizer", &tokenizer_path, "path of tokenizer.json");
  flags.AddIntList("ids", &ids, "comma-separated token ids");
  flags.AddBool("skip-special", &skip_special, "leave special tokens out of the text");
  flags.AddBool("json", &json, "print {\"text\": \"...\"}");
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("detokenize", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (!ids) return ReportError("detokenize", "--ids is required");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Load(tokenizer_path);
  if (!tokenizer.ok()) return ReportError("detokenize", std::string(tokenizer.status().message()));
  absl::StatusOr<std::string> text = (*tokenizer)->Decode(*ids, skip_special);
  if (!text.ok()) return ReportError("detokenize", std::string(text.status().message()));
  if (json) {
    std::puts(nlohmann::json{{"text", *text}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::fwrite(text->data(), 1, text->size(), stdout);
    std::fputs("\n", stdout);
  }
  return 0;
}

}  // namespace xlserve::cli
