#include "tests/engine/bf16_golden_check.h"

#include <catch2/catch.hpp>
#include <cstdio>

#include "engine/generator.h"
#include "engine/state_cache.h"

namespace xlserve::testing {

void CheckBf16Golden(Backend* backend, const GoldenCase& c, const std::string& label) {
  REQUIRE(backend->precision() == Precision::kBf16);
  REQUIRE(c.bf16_prompts.size() == c.prompts.size());
  auto cache = StateCache::Create(backend, 1);
  REQUIRE(cache.ok());
  Generator generator(backend, &*cache);
  double hf_vs_fp32 = 0, ours_vs_hf = 0, ours_vs_fp32 = 0;
  struct Flip {
    size_t prompt;
    size_t step;
    double hf_margin;
    bool ours_is_fp32s;  // at the flip this backend still picks the fp32 reference's token
  };
  std::vector<Flip> flips;
  int compared = 0, total = 0, same_as_fp32 = 0;
  for (size_t i = 0; i < c.prompts.size(); ++i) {
    const GoldenPrompt& fp32 = c.prompts[i];
    const GoldenPrompt& hf = c.bf16_prompts[i];
    REQUIRE(hf.prompt_ids == fp32.prompt_ids);
    REQUIRE(hf.greedy_margins.size() == hf.greedy_tokens.size());
    GenerationRequest request;
    request.prompt_ids.assign(hf.prompt_ids.begin(), hf.prompt_ids.end());
    request.max_new_tokens = static_cast<int>(hf.greedy_tokens.size());
    absl::StatusOr<GenerationResult> out = generator.Generate(request);
    REQUIRE(out.ok());
    hf_vs_fp32 = std::max(hf_vs_fp32, MaxAbsDiff(hf.last_logits, fp32.last_logits));
    ours_vs_hf = std::max(ours_vs_hf, MaxAbsDiff(out->prompt_last_logits, hf.last_logits));
    ours_vs_fp32 = std::max(ours_vs_fp32, MaxAbsDiff(out->prompt_last_logits, fp32.last_logits));
    REQUIRE(out->tokens.size() == hf.greedy_tokens.size());
    size_t step = 0;
    while (step < hf.greedy_tokens.size() && out->tokens[step] == hf.greedy_tokens[step]) ++step;
    compared += static_cast<int>(step);
    for (size_t t = 0; t < fp32.greedy_tokens.size() && out->tokens[t] == fp32.greedy_tokens[t]; ++t) ++same_as_fp32;
    total += static_cast<int>(hf.greedy_tokens.size());
    if (step < hf.greedy_tokens.size()) {
      flips.push_back({i, step, hf.greedy_margins[step],
                       step < fp32.greedy_tokens.size() && out->tokens[step] == fp32.greedy_tokens[step]});
    }
  }
  const double bound = 2 * hf_vs_fp32;
  std::printf("%s bf16 golden %-22s max|dlogit| vs transformers-bf16 %.3g (bound %.3g), vs fp32 %.3g "
              "(transformers-bf16 vs fp32 %.3g); greedy tokens as transformers-bf16's %d/%d, as fp32's %d/%d\n",
              label.c_str(), c.name.c_str(), ours_vs_hf, bound, ours_vs_fp32, hf_vs_fp32, compared, total,
              same_as_fp32, total);
  for (const Flip& f : flips) {
    std::printf("  flip: prompt %zu of %zu tokens, step %zu, transformers-bf16 top-2 margin %.3g; %s\n", f.prompt,
                c.prompts[f.prompt].prompt_ids.size(), f.step, f.hf_margin,
                f.ours_is_fp32s ? "here transformers-bf16 leaves the fp32 tokens, this backend keeps them"
                                : "this backend leaves the fp32 tokens too");
  }
  INFO(label << " case " << c.name);
  CHECK(ours_vs_fp32 <= hf_vs_fp32);
  CHECK(ours_vs_hf <= bound);
  for (const Flip& f : flips) CHECK(f.hf_margin <= bound);
}

}  // namespace xlserve::testing
