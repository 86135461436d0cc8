// The shipped tokenizer on arbitrary bytes: Encode accepts valid UTF-8 and refuses the rest;
// what it encodes decodes back to the same text (byte-level BPE is lossless); the streaming
// decoder agrees with Decode; arbitrary ids decode or are refused, never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/streaming_decoder.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const xlserve::Tokenizer& tokenizer = xlserve::fuzz::ShippedTokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<int>> ids = tokenizer.Encode(text);
  if (ids.ok()) {
    absl::StatusOr<std::string> back = tokenizer.Decode(*ids);
    if (!back.ok() || *back != text) std::abort();
    xlserve::StreamingDecoder stream(tokenizer);
    std::string streamed;
    for (int id : *ids) {
      absl::StatusOr<std::string> piece = stream.Push(id);
      if (!piece.ok()) std::abort();
      streamed += *piece;
    }
    streamed += stream.Flush();
    if (streamed != text) std::abort();
  }
  // The same bytes read as little-endian 16-bit ids, some outside the vocabulary.
  std::vector<int> raw;
  for (size_t i = 0; i + 1 < size; i += 2) raw.push_back(data[i] | (data[i + 1] << 8));
  (void)tokenizer.Decode(raw);
  (void)tokenizer.Decode(raw, true);
  return 0;
}
