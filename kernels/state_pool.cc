#include "kernels/state_pool.h"

#include <string>
#include <vector>

#include "engine/util/dtype.h"
#include "base/status_macros.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {
namespace {

constexpr int64_t kHeadAlignElems = 8;  // 16 bytes of bf16; 32 of fp32

}  // namespace

StatePool::StatePool(const StateLayout& layout, StateType type) : layout_(layout), type_(type) {}

StatePool::~StatePool() { Free(); }

void StatePool::Free() {
  cudaFree(pool_);
  cudaFree(m_);
  pool_ = nullptr;
  m_ = nullptr;
  num_slots_ = 0;
}

int64_t StatePool::head_elems() const {
  const int64_t used = int64_t(layout_.qk_head_dim) * layout_.v_head_dim + layout_.qk_head_dim;
  return (used + kHeadAlignElems - 1) / kHeadAlignElems * kHeadAlignElems;
}

int64_t StatePool::slot_bytes() const { return slot_elems() * elem_bytes() + m_per_slot() * 4; }

absl::Status StatePool::Allocate(int num_slots) {
  if (num_slots < 1) return absl::InvalidArgumentError("need at least one state slot");
  Free();
  const size_t pool_bytes = size_t(num_slots) * slot_elems() * elem_bytes();
  const size_t m_bytes = size_t(num_slots) * m_per_slot() * sizeof(float);
  if (cudaMalloc(&pool_, pool_bytes) != cudaSuccess || cudaMalloc(reinterpret_cast<void**>(&m_), m_bytes) != cudaSuccess) {
    cudaGetLastError();
    Free();
    return absl::ResourceExhaustedError("cannot allocate " + std::to_string(num_slots) + " state slots (" +
                                        std::to_string((pool_bytes + m_bytes) / 1e6) + " MB) on the GPU");
  }
  CUDA_RETURN_IF_ERROR(cudaMemset(pool_, 0, pool_bytes));
  CUDA_RETURN_IF_ERROR(cudaMemset(m_, 0, m_bytes));
  num_slots_ = num_slots;
  return absl::OkStatus();
}

absl::Status StatePool::Reset(int slot, cudaStream_t stream) {
  char* base = static_cast<char*>(pool_) + slot * slot_elems() * elem_bytes();
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(base, 0, slot_elems() * elem_bytes(), stream));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(m_ + slot * m_per_slot(), 0, m_per_slot() * sizeof(float), stream));
  return absl::OkStatus();
}

absl::Status StatePool::Read(int slot, std::span<float> out, cudaStream_t stream) const {
  std::vector<uint8_t> raw(slot_elems() * elem_bytes());
  std::vector<float> m(m_per_slot());
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(raw.data(), static_cast<const char*>(pool_) + slot * raw.size(), raw.size(),
                                       cudaMemcpyDeviceToHost, stream));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(m.data(), m_ + slot * m_per_slot(), m.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  const int64_t cn = int64_t(layout_.qk_head_dim) * layout_.v_head_dim + layout_.qk_head_dim;
  for (int l = 0; l < layout_.num_layers; ++l) {
    for (int h = 0; h < layout_.num_heads; ++h) {
      const int64_t src = (int64_t(l) * layout_.num_heads + h) * head_elems();
      float* dst = out.data() + layout_.c_offset(l, h);
      for (int64_t i = 0; i < cn; ++i) {
        dst[i] = type_ == StateType::kF32 ? reinterpret_cast<const float*>(raw.data())[src + i]
                                          : BF16ToFloat(reinterpret_cast<const uint16_t*>(raw.data())[src + i]);
      }
      out[layout_.m_offset(l, h)] = m[int64_t(l) * layout_.num_heads + h];
    }
  }
  return absl::OkStatus();
}

absl::Status StatePool::Write(int slot, std::span<const float> in, cudaStream_t stream) {
  std::vector<uint8_t> raw(slot_elems() * elem_bytes(), 0);
  std::vector<float> m(m_per_slot());
  const int64_t cn = int64_t(layout_.qk_head_dim) * layout_.v_head_dim + layout_.qk_head_dim;
  for (int l = 0; l < layout_.num_layers; ++l) {
    for (int h = 0; h < layout_.num_heads; ++h) {
      const int64_t dst = (int64_t(l) * layout_.num_heads + h) * head_elems();
      const float* src = in.data() + layout_.c_offset(l, h);
      for (int64_t i = 0; i < cn; ++i) {
        if (type_ == StateType::kF32) {
          reinterpret_cast<float*>(raw.data())[dst + i] = src[i];
        } else {
          reinterpret_cast<uint16_t*>(raw.data())[dst + i] = FloatToBF16(src[i]);
        }
      }
      m[int64_t(l) * layout_.num_heads + h] = in[layout_.m_offset(l, h)];
    }
  }
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(static_cast<char*>(pool_) + slot * raw.size(), raw.data(), raw.size(),
                                       cudaMemcpyHostToDevice, stream));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(m_ + slot * m_per_slot(), m.data(), m.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

MlstmStateRef StatePool::Ref(int layer) const {
  MlstmStateRef r;
  r.pool = pool_;
  r.type = type_;
  r.slot_elems = slot_elems();
  r.c_offset = int64_t(layer) * layout_.num_heads * head_elems();
  r.head_elems = head_elems();
  r.m = m_;
  r.m_slot_stride = m_per_slot();
  r.m_offset = int64_t(layer) * layout_.num_heads;
  r.m_head_stride = 1;
  return r;
}

}  // namespace xlserve::kernels
