#include "loadtest/workload.h"

#include <fstream>
#include <random>

#include "nlohmann/json.hpp"
#include "loadtest/code_text.h"

namespace xlserve::loadtest {
namespace {

absl::Status ParseDatasetLine(const std::string& where, const std::string& line, WorkloadRequest* out,
                              bool* has_max_tokens) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(where + ": not JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("prompt")) return absl::InvalidArgumentError(where + ": needs a \"prompt\"");
  const auto& p = j["prompt"];
  if (p.is_string()) {
    out->prompt = p.get<std::string>();
    if (out->prompt.empty()) return absl::InvalidArgumentError(where + ": \"prompt\" is empty");
  } else if (p.is_array() && !p.empty()) {
    for (const auto& id : p) {
      if (!id.is_number_integer()) return absl::InvalidArgumentError(where + ": \"prompt\" ids must be integers");
      out->prompt_token_ids.push_back(id.get<int>());
    }
  } else {
    return absl::InvalidArgumentError(where + ": \"prompt\" must be a string or a non-empty array of token ids");
  }
  *has_max_tokens = j.contains("max_tokens");
  if (*has_max_tokens) {
    if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int>() < 1) {
      return absl::InvalidArgumentError(where + ": \"max_tokens\" must be a positive integer");
    }
    out->max_tokens = j["max_tokens"].get<int>();
  }
  if (j.contains("session_id")) {
    if (!j["session_id"].is_string()) return absl::InvalidArgumentError(where + ": \"session_id\" must be a string");
    out->session_id = j["session_id"].get<std::string>();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<WorkloadRequest>> GenerateWorkload(const WorkloadOptions& options) {
  if (options.count < 1) return absl::InvalidArgumentError("a workload needs at least one request");
  if (options.kind == PromptKind::kTokenIds && options.vocab_size < 2) {
    return absl::InvalidArgumentError("token-id prompts need a vocabulary size of at least 2");
  }
  // Separate streams for lengths and content: changing the prompt kind keeps the lengths.
  std::mt19937_64 length_rng(options.seed);
  std::mt19937_64 content_rng(options.seed ^ 0x9e3779b97f4a7c15ULL);
  std::uniform_int_distribution<int> id_dist(1, std::max(1, options.vocab_size - 1));
  std::vector<WorkloadRequest> requests(options.count);
  for (WorkloadRequest& r : requests) {
    const int prompt_tokens = options.prompt_tokens.Sample(length_rng);
    r.max_tokens = options.max_tokens.Sample(length_rng);
    if (options.kind == PromptKind::kText) {
      r.prompt = RandomCodeText(prompt_tokens, content_rng);
    } else {
      r.prompt_token_ids.resize(prompt_tokens);
      for (int& id : r.prompt_token_ids) id = id_dist(content_rng);
    }
  }
  return requests;
}

absl::StatusOr<std::vector<WorkloadRequest>> LoadDatasetWorkload(const std::string& path,
                                                                 const WorkloadOptions& options) {
  if (options.count < 1) return absl::InvalidArgumentError("a workload needs at least one request");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open dataset " + path);
  std::mt19937_64 length_rng(options.seed);
  std::vector<WorkloadRequest> lines;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    WorkloadRequest r;
    bool has_max_tokens = false;
    if (absl::Status st = ParseDatasetLine(path + ":" + std::to_string(number), line, &r, &has_max_tokens); !st.ok()) {
      return st;
    }
    if (!has_max_tokens) r.max_tokens = options.max_tokens.Sample(length_rng);
    lines.push_back(std::move(r));
  }
  if (lines.empty()) return absl::InvalidArgumentError("dataset " + path + " has no requests");
  std::vector<WorkloadRequest> requests;
  requests.reserve(options.count);
  for (int i = 0; i < options.count; ++i) requests.push_back(lines[i % lines.size()]);
  return requests;
}

}  // namespace xlserve::loadtest
