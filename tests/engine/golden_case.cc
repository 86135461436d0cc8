#include "tests/engine/golden_case.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "nlohmann/json.hpp"

namespace xlserve::testing {

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
    if (j.at("format_version").get<int>() != 1) {
      throw std::runtime_error(golden.string() + ": unsupported format_version");
    }
    GoldenCase c;
    c.name = j.at("case").get<std::string>();
    c.dir = entry.path().string();
    c.weights_dtype = j.at("weights_dtype").get<std::string>();
    for (const nlohmann::json& p : j.at("prompts")) {
      GoldenPrompt gp;
      gp.prompt_ids = p.at("prompt_ids").get<std::vector<int>>();
      gp.last_logits = p.at("last_logits").get<std::vector<float>>();
      gp.greedy_tokens = p.at("greedy_tokens").get<std::vector<int>>();
      gp.min_greedy_margin = p.value("min_greedy_margin", 0.0);
      c.prompts.push_back(std::move(gp));
    }
    cases.push_back(std::move(c));
  }
  std::sort(cases.begin(), cases.end(),
            [](const GoldenCase& a, const GoldenCase& b) { return a.name < b.name; });
  return cases;
}

}  // namespace xlserve::testing
