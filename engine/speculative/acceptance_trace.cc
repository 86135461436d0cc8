#include "engine/speculative/acceptance_trace.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <numeric>
#include <system_error>


namespace xlserve {
namespace {

// Far beyond any model's heads; bounds what a file can make the reader allocate.
constexpr int kMostDrafts = 64;

absl::Status Invalid(const std::string& what) { return absl::InvalidArgumentError("acceptance trace: " + what); }

}  // namespace

std::vector<double> ConditionalAcceptanceRates(const AcceptanceTrace& trace) {
  std::vector<double> rates(trace.num_draft, 0.0);
  for (int j = 1; j <= trace.num_draft; ++j) {
    int64_t reached = 0, kept = 0;  // verifies that judged draft j, and those that kept it
    for (const auto& [drafts, counts] : trace.counts.by_draft_length) {
      if (drafts < j) continue;
      for (int a = j - 1; a <= drafts; ++a) reached += counts[a];
      for (int a = j; a <= drafts; ++a) kept += counts[a];
    }
    if (reached > 0) rates[j - 1] = double(kept) / double(reached);
  }
  return rates;
}

nlohmann::json AcceptanceTraceToJson(const AcceptanceTrace& trace) {
  nlohmann::json verifies = nlohmann::json::object();
  for (const auto& [drafts, counts] : trace.counts.by_draft_length) verifies[std::to_string(drafts)] = counts;
  return {{"model", trace.model},
          {"num_draft", trace.num_draft},
          {"verifies", verifies},
          {"conditional_acceptance", ConditionalAcceptanceRates(trace)}};
}

absl::StatusOr<AcceptanceTrace> AcceptanceTraceFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return Invalid("not a JSON object");
  AcceptanceTrace trace;
  if (j.contains("model") && j["model"].is_string()) trace.model = j["model"].get<std::string>();
  if (!j.contains("num_draft") || !j["num_draft"].is_number_integer()) return Invalid("num_draft: missing or not an integer");
  trace.num_draft = j["num_draft"].get<int>();
  if (trace.num_draft < 1 || trace.num_draft > kMostDrafts) {
    return Invalid("num_draft " + std::to_string(trace.num_draft) + " outside 1.." + std::to_string(kMostDrafts));
  }
  if (!j.contains("verifies") || !j["verifies"].is_object()) return Invalid("verifies: missing or not an object");
  for (const auto& [key, counts] : j["verifies"].items()) {
    int drafts = 0;
    const auto [end, error] = std::from_chars(key.data(), key.data() + key.size(), drafts);
    if (error != std::errc() || end != key.data() + key.size() || drafts < 1) return Invalid("verifies: key '" + key + "' is not a draft length >= 1");
    if (drafts > trace.num_draft) {
      return Invalid("verifies: counts for k = " + key + " > num_draft " + std::to_string(trace.num_draft));
    }
    if (!counts.is_array() || counts.size() != size_t(drafts) + 1) {
      return Invalid("verifies[" + key + "]: want an array of " + std::to_string(drafts + 1) + " counts (0.." + key +
                     " drafts kept)");
    }
    std::vector<int64_t>& mine = trace.counts.by_draft_length[drafts];
    for (const auto& c : counts) {
      if (!c.is_number_integer() || c.get<int64_t>() < 0) return Invalid("verifies[" + key + "]: counts must be integers >= 0");
      mine.push_back(c.get<int64_t>());
    }
  }
  return trace;
}

absl::Status WriteAcceptanceTrace(const std::string& path, const AcceptanceTrace& trace) {
  std::ofstream out(path);
  out << AcceptanceTraceToJson(trace).dump(2) << "\n";
  if (!out) return absl::InternalError("cannot write acceptance trace " + path);
  return absl::OkStatus();
}

absl::StatusOr<AcceptanceTrace> ReadAcceptanceTrace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open acceptance trace " + path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(path + ": acceptance trace: not valid JSON");
  absl::StatusOr<AcceptanceTrace> trace = AcceptanceTraceFromJson(j);
  if (!trace.ok()) return absl::Status(trace.status().code(), path + ": " + std::string(trace.status().message()));
  return trace;
}

absl::StatusOr<ReplayedAcceptance> ReplayedAcceptance::Create(const AcceptanceTrace& trace, uint64_t seed) {
  const auto& by_length = trace.counts.by_draft_length;
  const auto longest = by_length.find(trace.num_draft);
  if (longest == by_length.end() || std::accumulate(longest->second.begin(), longest->second.end(), int64_t{0}) == 0) {
    return Invalid("no verify of num_draft = " + std::to_string(trace.num_draft) + " drafts to replay");
  }
  std::vector<std::vector<int64_t>> counts(trace.num_draft);
  for (int k = 1; k <= trace.num_draft; ++k) {
    const auto it = by_length.find(k);
    if (it != by_length.end() && std::accumulate(it->second.begin(), it->second.end(), int64_t{0}) > 0) {
      counts[k - 1] = it->second;
      continue;
    }
    counts[k - 1].assign(k + 1, 0);
    for (int kept = 0; kept <= trace.num_draft; ++kept) counts[k - 1][std::min(kept, k)] += longest->second[kept];
  }
  return ReplayedAcceptance(std::move(counts), seed);
}

ReplayedAcceptance::ReplayedAcceptance(std::vector<std::vector<int64_t>> counts, uint64_t seed)
    : counts_(std::move(counts)), rng_(seed) {}

absl::StatusOr<int> ReplayedAcceptance::Draw(int drafts) {
  if (drafts < 1 || drafts > static_cast<int>(counts_.size())) {
    return absl::OutOfRangeError("replayed acceptance: a verify of " + std::to_string(drafts) +
                                 " drafts; the trace covers 1.." + std::to_string(counts_.size()));
  }
  const std::vector<int64_t>& counts = counts_[drafts - 1];
  // mt19937_64's output is fixed by the standard, unlike the library's distributions: draws
  // stay the same across toolchains.
  int64_t r = static_cast<int64_t>(rng_() % static_cast<uint64_t>(std::accumulate(counts.begin(), counts.end(), int64_t{0})));
  for (int kept = 0; kept < drafts; ++kept) {
    if (r < counts[kept]) return kept;
    r -= counts[kept];
  }
  return drafts;
}

}  // namespace xlserve
