#include "tests/engine/golden_case.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "nlohmann/json.hpp"

namespace xlserve::testing {

namespace {

std::vector<GoldenPrompt> ReadPrompts(const std::filesystem::path& file) {
  std::ifstream in(file);
  const nlohmann::json j = nlohmann::json::parse(in);
  if (j.at("format_version").get<int>() != 1) throw std::runtime_error(file.string() + ": unsupported format_version");
  std::vector<GoldenPrompt> prompts;
  for (const nlohmann::json& p : j.at("prompts")) {
    GoldenPrompt gp;
    gp.prompt_ids = p.at("prompt_ids").get<std::vector<int>>();
    gp.last_logits = p.at("last_logits").get<std::vector<float>>();
    gp.greedy_tokens = p.at("greedy_tokens").get<std::vector<int>>();
    gp.min_greedy_margin = p.value("min_greedy_margin", 0.0);
    gp.greedy_margins = p.value("greedy_margins", std::vector<float>{});
    prompts.push_back(std::move(gp));
  }
  return prompts;
}

}  // namespace

double MaxAbsDiff(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - b[i]);
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
  }
  return worst;
}

std::vector<GoldenCase> LoadGoldenCases() {
  namespace fs = std::filesystem;
  std::vector<GoldenCase> cases;
  const fs::path root = "tests/golden/models";
  if (!fs::is_directory(root)) throw std::runtime_error("golden data missing: " + root.string());
  for (const fs::directory_entry& entry : fs::directory_iterator(root)) {
    const fs::path golden = entry.path() / "golden.json";
    if (!fs::exists(golden)) continue;
    std::ifstream in(golden);
    const nlohmann::json j = nlohmann::json::parse(in);
    GoldenCase c;
    c.name = j.at("case").get<std::string>();
    c.dir = entry.path().string();
    c.weights_dtype = j.at("weights_dtype").get<std::string>();
    c.prompts = ReadPrompts(golden);
    const fs::path bf16 = entry.path() / "golden_bf16.json";
    if (fs::exists(bf16)) c.bf16_prompts = ReadPrompts(bf16);
    cases.push_back(std::move(c));
  }
  std::sort(cases.begin(), cases.end(),
            [](const GoldenCase& a, const GoldenCase& b) { return a.name < b.name; });
  return cases;
}

}  // namespace xlserve::testing
