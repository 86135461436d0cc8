// Tokenization throughput: Tokenizer::Encode of one text with each of several tokenizer.json
// files, cold (a freshly loaded tokenizer, its BPE cache empty) and warm (the same tokenizer
// again), with the ids' count and hash so that runs of different builds can be checked to
// produce the same tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace xlserve::bench {

struct TokenizerBenchRow {
  std::string tokenizer;  // the tokenizer.json path
  int64_t bytes = 0;      // of the text
  int64_t tokens = 0;
  uint64_t ids_hash = 0;  // FNV-1a over the ids
  double cold_ms = 0;     // median over the repeats
  double warm_ms = 0;     // median over the repeats

  double cold_mb_per_s() const { return cold_ms > 0 ? bytes / 1e3 / cold_ms : 0; }
  double warm_mb_per_s() const { return warm_ms > 0 ? bytes / 1e3 / warm_ms : 0; }
};

// Encodes `text` `repeats` times cold and `repeats` times warm with each tokenizer.
absl::StatusOr<std::vector<TokenizerBenchRow>> RunTokenizerBench(const std::vector<std::string>& tokenizers,
                                                                 const std::string& text, int repeats);

std::string FormatTokenizerTable(const std::vector<TokenizerBenchRow>& rows);
nlohmann::json TokenizerRowsToJson(const std::vector<TokenizerBenchRow>& rows);

}  // namespace xlserve::bench
