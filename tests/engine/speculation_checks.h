// Self-speculative decoding checks shared by the CPU tests and the GPU tests: small random
// models with MTP heads, and Catch2 checks that run on any backend that supports speculation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/generator.h"
#include "engine/model/model_weights.h"

namespace xlserve::testing {

// A random model (vocabulary `vocab`, 2 blocks, 4 heads of `type`) with lively logits. With
// `heads_copy_last_block`, every MTP head is a copy of head 0 (the last trunk block) and the
// embeddings are tied: drafts then repeat the bonus token, which such a model often
// continues, so runs of drafts of every length get accepted and rejected and every commit
// length is exercised.
std::shared_ptr<const ModelWeights> MakeMtpModel(MtpHeadType type, bool heads_copy_last_block, uint32_t seed,
                                                 int vocab = 96);

// n token ids in [3, 95] (no special tokens).
std::vector<int32_t> RandomPrompt(int n, uint32_t seed);

// Generates from `prompt` in a one-slot cache of `backend`.
GenerationResult GenerateWith(Backend* backend, const std::vector<int32_t>& prompt, SpeculationMode mode, int k,
                              int max_new = 40, float temperature = 0.0f, uint64_t seed = 0);

// max |a - b| / (1 + |b|) over the elements.
double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b);

// Makes a backend for `weights` with `slots` allocated state slots.
using BackendFactory = std::function<std::unique_ptr<Backend>(std::shared_ptr<const ModelWeights>, int slots)>;

// Greedy decoding with speculation on (k = 1, 3) and auto gives the tokens of plain decoding,
// for block and linear heads, and copied heads get many drafts accepted.
void CheckGreedySpeculationIsLossless(const BackendFactory& make);

// One BatchDecoder batch mixing plain and speculative sequences of different k gives each
// sequence the tokens it gets decoded alone.
void CheckMixedBatchMatchesAlone(const BackendFactory& make);

// A deferred verify leaves the state untouched, its rows equal stepping the same tokens, and
// Commit(a) gives the state of stepping a tokens one by one (relative tolerance `tol`).
void CheckDeferredCommitEqualsStepping(const BackendFactory& make, double tol);

// Speculative sampling gives the token distribution of plain sampling (chi-square test over
// seeded runs on a vocabulary of 8).
void CheckSpeculativeSamplingDistribution(const BackendFactory& make);

}  // namespace xlserve::testing
