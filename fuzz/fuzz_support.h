// Shared by the fuzz targets: the shipped model's files, loaded once per process.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include "engine/model/model_config.h"
#include "engine/tokenizer/tokenizer.h"

namespace xlserve::fuzz {

// $XLSERVE_FUZZ_MODEL, else models/xlstm-code-mtp under the current directory (scripts/fuzz.sh
// runs from the repository root).
inline std::string ModelDir() {
  const char* dir = std::getenv("XLSERVE_FUZZ_MODEL");
  return dir ? dir : "models/xlstm-code-mtp";
}

// The shipped tokenizer; aborts when it cannot be loaded, since every input would then be
// rejected for the wrong reason.
inline const Tokenizer& ShippedTokenizer() {
  static const std::unique_ptr<Tokenizer> tokenizer = [] {
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromFile(ModelDir() + "/tokenizer.json");
    if (!t.ok() || !*t) std::abort();
    return std::move(*t);
  }();
  return *tokenizer;
}

inline const ModelConfig& ShippedConfig() {
  static const ModelConfig config = [] {
    absl::StatusOr<ModelConfig> c = LoadModelConfig(ModelDir() + "/config.json");
    if (!c.ok()) std::abort();
    return *c;
  }();
  return config;
}

}  // namespace xlserve::fuzz
