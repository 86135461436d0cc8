// Tokenizer::FromJson on arbitrary tokenizer.json content (vocabularies, merges, added tokens,
// normalizers, pre-tokenizer regexes): errors, never crashes, hangs or unbounded memory. A
// tokenizer that loads then encodes and decodes a few texts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<std::unique_ptr<xlserve::Tokenizer>> tokenizer =
      xlserve::Tokenizer::FromJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!tokenizer.ok() || !*tokenizer) return 0;
  for (std::string_view text : {"def f(x):\n    return x  # é 👋", "  \t\r\n", "<|endoftext|>abc<s>"}) {
    absl::StatusOr<std::vector<int>> ids = (*tokenizer)->Encode(text);
    if (ids.ok()) (void)(*tokenizer)->Decode(*ids);
  }
  const int vocab = (*tokenizer)->vocab_size();
  for (int id : {0, 1, vocab / 2, vocab - 1, vocab, -1}) {
    const int one[] = {id};
    (void)(*tokenizer)->Decode(one);
    (void)(*tokenizer)->IdToToken(id);
  }
  return 0;
}
