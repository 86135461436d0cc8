#include "bench/peer_figures.h"

#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"

namespace xlserve::bench {
namespace {

// A positive number at `key` of `row`, or nothing.
bool Positive(const nlohmann::json& row, const char* key, double* out) {
  if (!row.contains(key) || !row[key].is_number()) return false;
  *out = row[key].get<double>();
  return *out > 0;
}

}  // namespace

absl::StatusOr<PeerFigures> ReadPeerFigures(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("--peer: cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  const auto bad = [&](const std::string& why) { return absl::InvalidArgumentError("--peer " + path + ": " + why); };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object (bench/nxai_peer.py --json writes one)");
  if (j.value("tiny", false)) return bad("measured on the tiny shape (nxai_peer.py --tiny), not 7b");
  if (j.value("state_dtype", std::string("bf16")) != "bf16") return bad("its state is not bf16");
  if (!j.contains("rows") || !j["rows"].is_array()) return bad("no \"rows\" array");
  PeerFigures peer;
  peer.impl = j.value("impl", std::string("peer"));
  for (const nlohmann::json& row : j["rows"]) {
    if (!row.is_object() || !row.contains("kind") || !row["kind"].is_string()) return bad("a row without a kind");
    const std::string kind = row["kind"].get<std::string>();
    double key = 0, ms = 0;
    if (kind == "decode") {
      if (!Positive(row, "batch", &key) || !Positive(row, "step_ms", &ms)) {
        return bad("a decode row without batch and step_ms");
      }
      peer.step_ms[int(key)] = ms;
    } else if (kind == "prefill") {
      if (!Positive(row, "prompt_tokens", &key) || !Positive(row, "ttft_ms", &ms)) {
        return bad("a prefill row without prompt_tokens and ttft_ms");
      }
      peer.ttft_ms[int(key)] = ms;
    }
  }
  if (peer.step_ms.empty()) return bad("no decode row");
  return peer;
}

}  // namespace xlserve::bench
