// The bf16 precision (Precision::kBf16) against transformers running the bf16 golden models in
// bf16 (golden_bf16.json, tools/golden/make_bf16_golden.py), for any backend.
#pragma once

#include <string>

#include "engine/backend.h"
#include "tests/engine/golden_case.h"

namespace xlserve::testing {

// Runs every prompt of `c` (a case with bf16_prompts) greedily through `backend` (one free slot,
// precision bf16) and checks, with Catch2, the prompt's last logits and the greedy tokens
// against transformers' bf16 run, and against its fp32 run (golden.json). Prints one line
// headed by `label`.
//
// The bound is derived from the case itself: transformers in bf16 rounds every activation,
// product output and the residual stream to bf16, the bf16 precision only the inputs of the
// products, so its logits lie at least as close to the fp32 truth as transformers' bf16 ones
// (checked), and by the triangle inequality within twice transformers' own bf16 error of
// them. Greedy tokens must be identical, except after a step where transformers' top-2 margin
// is under that bound: a near-tie that the two roundings may break either way (reported with
// its margin; the rest of that continuation is not compared).
void CheckBf16Golden(Backend* backend, const GoldenCase& c, const std::string& label);

}  // namespace xlserve::testing
