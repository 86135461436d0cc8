#include "kernels/device_sampler.h"

#include <algorithm>
#include <bit>

#include "base/status_macros.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {

absl::Status DeviceSampler::Sample(std::span<const SequenceInput> batch, const std::vector<int>& row_offset,
                                   const float* logits, int vocab, cudaStream_t stream, HostCopier* copier,
                                   StageProfiler* profiler, ForwardOutput* out) {
  out->sampled.assign(batch.size(), -1);
  plan_.Reset(vocab);
  std::vector<size_t> sampled_seqs;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].sample == nullptr) continue;
    plan_.Add(*batch[i].sample, row_offset[i + 1] - 1);
    sampled_seqs.push_back(i);
  }
  if (sampled_seqs.empty()) return absl::OkStatus();
  const std::vector<SampleRowSpec>& rows = plan_.rows();
  const std::vector<PenaltyEntry>& penalties = plan_.penalties();
  const size_t n = rows.size();
  const size_t n_cap = std::bit_ceil(n);
  const size_t entries_cap = std::bit_ceil(std::max<size_t>(penalties.size(), 1024));
  ASSIGN_OR_RETURN(SampleRowSpec* d_rows, rows_.Get(n_cap));
  ASSIGN_OR_RETURN(PenaltyEntry* d_penalties, penalties_.Get(entries_cap));
  ASSIGN_OR_RETURN(float* penalised, penalised_.Get(n_cap * vocab));
  ASSIGN_OR_RETURN(double* weights, weights_.Get(n_cap * vocab));
  ASSIGN_OR_RETURN(int32_t* d_tokens, tokens_.Get(n_cap));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_rows, rows.data(), n * sizeof(SampleRowSpec), cudaMemcpyHostToDevice, stream));
  if (!penalties.empty()) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_penalties, penalties.data(), penalties.size() * sizeof(PenaltyEntry),
                                         cudaMemcpyHostToDevice, stream));
  }
  const SampleRowsParams p{logits, vocab, d_rows, static_cast<int>(n), d_penalties, penalised, weights, d_tokens};
  CUDA_RETURN_IF_ERROR(SampleRows(p, stream));
  RETURN_IF_ERROR(profiler->Mark("sample", stream));
  sampled_host_.resize(n);
  RETURN_IF_ERROR(copier->Copy(sampled_host_.data(), d_tokens, n * sizeof(int32_t), stream));
  for (size_t j = 0; j < n; ++j) out->sampled[sampled_seqs[j]] = sampled_host_[j];
  return absl::OkStatus();
}

}  // namespace xlserve::kernels
