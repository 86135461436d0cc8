#include "bench/peer_figures.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

namespace xlserve::bench {
namespace {

std::string Write(const std::string& name, const std::string& text) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST_CASE("the peer's decode steps and TTFTs are read from nxai_peer.py's JSON") {
  const std::string path = Write("nxai.json", R"json({
    "impl": "NX-AI xlstm_large + mlstm_kernels (chunkwise--triton_xl_chunk, step triton)",
    "state_dtype": "bf16", "cuda_graph": true, "tiny": false, "weight_mode": "single", "chunk_size": 128,
    "rows": [
      {"kind": "prefill", "prompt_tokens": 128, "ttft_ms": 12.5},
      {"kind": "prefill", "prompt_tokens": 2048, "ttft_ms": 101.0},
      {"kind": "decode", "batch": 1, "step_ms": 7.69, "tokens_per_s": 130.0},
      {"kind": "decode", "batch": 64, "step_ms": 13.23, "tokens_per_s": 4837.0}
    ]})json");
  const auto peer = ReadPeerFigures(path);
  REQUIRE(peer.ok());
  CHECK(peer->impl.find("NX-AI") == 0);
  CHECK(peer->step_ms == std::map<int, double>{{1, 7.69}, {64, 13.23}});
  CHECK(peer->ttft_ms == std::map<int, double>{{128, 12.5}, {2048, 101.0}});
}

TEST_CASE("a peer file of another shape, a broken one or none is refused with the reason") {
  const auto code = [](const std::string& path) { return ReadPeerFigures(path).status().code(); };
  const auto message = [](const std::string& path) { return std::string(ReadPeerFigures(path).status().message()); };
  CHECK(code("/nonexistent/nxai.json") == absl::StatusCode::kNotFound);
  const std::string tiny =
      Write("tiny.json", R"({"tiny": true, "rows": [{"kind": "decode", "batch": 1, "step_ms": 2}]})");
  CHECK(code(tiny) == absl::StatusCode::kInvalidArgument);
  CHECK(message(tiny).find("tiny shape") != std::string::npos);
  const std::string f32 =
      Write("f32.json", R"({"state_dtype": "f32", "rows": [{"kind": "decode", "batch": 1, "step_ms": 2}]})");
  CHECK(message(f32).find("not bf16") != std::string::npos);
  CHECK(message(Write("broken.json", "{\"rows\": [")).find("not a JSON object") != std::string::npos);
  CHECK(message(Write("empty.json", R"({"rows": [{"kind": "prefill", "prompt_tokens": 128, "ttft_ms": 9}]})"))
            .find("no decode row") != std::string::npos);
  CHECK(message(Write("bad_row.json", R"({"rows": [{"kind": "decode", "batch": 1, "step_ms": -3}]})"))
            .find("without batch and step_ms") != std::string::npos);
}

}  // namespace
}  // namespace xlserve::bench
