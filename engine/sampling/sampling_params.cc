#include "engine/sampling/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace xlserve {
namespace {

absl::Status Bad(const char* field, float value, const char* rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("sampling parameter ", field, " = ", value, " is invalid: must be ", rule));
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  // Each comparison is written so that NaN fails it.
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f)) {
    return Bad("temperature", p.temperature, "finite and >= 0 (0 = greedy)");
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling parameter top_k = ", p.top_k, " is invalid: must be >= 0 (0 = off)"));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return Bad("top_p", p.top_p, "in (0, 1] (1 = off)");
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return Bad("min_p", p.min_p, "in [0, 1] (0 = off)");
  }
  if (!(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f)) {
    return Bad("repetition_penalty", p.repetition_penalty, "finite and > 0 (1 = off)");
  }
  if (!std::isfinite(p.presence_penalty)) {
    return Bad("presence_penalty", p.presence_penalty, "finite (0 = off)");
  }
  if (!std::isfinite(p.frequency_penalty)) {
    return Bad("frequency_penalty", p.frequency_penalty, "finite (0 = off)");
  }
  return absl::OkStatus();
}

}  // namespace xlserve
