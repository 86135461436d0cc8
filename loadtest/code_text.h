// Synthetic Python-like prompt text for the shipped code model: random snippets built from a
// fixed vocabulary of keywords, names and punctuation, so prompts look like what it was
// trained on and tokenize to roughly one token per word.
#pragma once

#include <random>
#include <string>

namespace xlserve::loadtest {

// Returns a snippet of `words` vocabulary words (>= 1) laid out in indented lines. Deterministic
// for a given state of `rng`.
std::string RandomCodeText(int words, std::mt19937_64& rng);

}  // namespace xlserve::loadtest
