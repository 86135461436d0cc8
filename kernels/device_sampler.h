// Sampling on the GPU for the CUDA backend's Forward(): ForwardOutput::sampled from the logits a
// step left on the device, for the sequences that ask (SequenceInput::sample), with the host
// side planned by SamplePlan and the draw in sample_rows.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend.h"
#include "kernels/host_copier.h"
#include "kernels/launchers.h"
#include "kernels/sample_plan.h"
#include "kernels/scratch.h"
#include "kernels/stage_profiler.h"

namespace xlserve::kernels {

class DeviceSampler {
 public:
  // The token of each sequence's `sample` from its last row of `logits` ([picked rows, vocab];
  // row_offset[i + 1] - 1 is sequence i's last row) into out->sampled (-1 for the others).
  // Synchronises `stream` when anything is sampled.
  absl::Status Sample(std::span<const SequenceInput> batch, const std::vector<int>& row_offset, const float* logits,
                      int vocab, cudaStream_t stream, HostCopier* copier, StageProfiler* profiler, ForwardOutput* out);

 private:
  SamplePlan plan_;
  std::vector<int32_t> sampled_host_;
  // Outside any graph: their moves stale nothing, but capacities grow in powers of two all the
  // same, since the penalty lists grow by a token a step.
  uint64_t moves_ = 0;
  ScratchArray<SampleRowSpec> rows_{&moves_};
  ScratchArray<PenaltyEntry> penalties_{&moves_};
  ScratchArray<float> penalised_{&moves_};
  ScratchArray<double> weights_{&moves_};
  ScratchArray<int32_t> tokens_{&moves_};
};

}  // namespace xlserve::kernels
