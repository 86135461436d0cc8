#include "bench/tokenizer_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "engine/tokenizer/tokenizer.h"

namespace xlserve::bench {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

uint64_t HashIds(const std::vector<int>& ids) {
  uint64_t h = 1469598103934665603ull;
  for (int id : ids) {
    for (int byte = 0; byte < 4; ++byte) {
      h ^= (static_cast<uint32_t>(id) >> (8 * byte)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  return h;
}

// Milliseconds of one Encode of `text`; the ids go to `ids`.
absl::StatusOr<double> TimeEncode(const Tokenizer& tokenizer, const std::string& text, std::vector<int>* ids) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<int>> encoded = tokenizer.Encode(text);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!encoded.ok()) return encoded.status();
  *ids = std::move(*encoded);
  return ms;
}

}  // namespace

absl::StatusOr<std::vector<TokenizerBenchRow>> RunTokenizerBench(const std::vector<std::string>& tokenizers,
                                                                 const std::string& text, int repeats) {
  std::vector<TokenizerBenchRow> rows;
  for (const std::string& path : tokenizers) {
    TokenizerBenchRow row;
    row.tokenizer = path;
    row.bytes = static_cast<int64_t>(text.size());
    std::vector<double> cold, warm;
    std::vector<int> ids;
    for (int r = 0; r < repeats; ++r) {
      absl::StatusOr<std::unique_ptr<Tokenizer>> fresh = Tokenizer::FromFile(path);
      if (!fresh.ok()) return fresh.status();
      absl::StatusOr<double> ms = TimeEncode(**fresh, text, &ids);
      if (!ms.ok()) return ms.status();
      cold.push_back(*ms);
      // The same tokenizer again: its BPE cache now holds the text's pre-tokens.
      ms = TimeEncode(**fresh, text, &ids);
      if (!ms.ok()) return ms.status();
      warm.push_back(*ms);
    }
    row.tokens = static_cast<int64_t>(ids.size());
    row.ids_hash = HashIds(ids);
    row.cold_ms = Median(cold);
    row.warm_ms = Median(warm);
    rows.push_back(row);
  }
  return rows;
}

std::string FormatTokenizerTable(const std::vector<TokenizerBenchRow>& rows) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof(line), "%-48s %9s %9s %16s %9s %8s %9s %8s\n", "tokenizer", "bytes", "tokens",
                "ids hash", "cold ms", "MB/s", "warm ms", "MB/s");
  out += line;
  for (const TokenizerBenchRow& r : rows) {
    std::snprintf(line, sizeof(line), "%-48s %9lld %9lld %016llx %9.1f %8.2f %9.1f %8.2f\n", r.tokenizer.c_str(),
                  static_cast<long long>(r.bytes), static_cast<long long>(r.tokens),
                  static_cast<unsigned long long>(r.ids_hash), r.cold_ms, r.cold_mb_per_s(), r.warm_ms,
                  r.warm_mb_per_s());
    out += line;
  }
  return out;
}

nlohmann::json TokenizerRowsToJson(const std::vector<TokenizerBenchRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  char hash[17];
  for (const TokenizerBenchRow& r : rows) {
    std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(r.ids_hash));
    out.push_back({{"tokenizer", r.tokenizer},
                   {"bytes", r.bytes},
                   {"tokens", r.tokens},
                   {"ids_hash", hash},
                   {"cold_ms", r.cold_ms},
                   {"cold_mb_per_s", r.cold_mb_per_s()},
                   {"warm_ms", r.warm_ms},
                   {"warm_mb_per_s", r.warm_mb_per_s()}});
  }
  return out;
}

}  // namespace xlserve::bench
