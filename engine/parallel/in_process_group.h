// InProcessGroup: tensor-parallel ranks as threads of one process, their collectives through
// shared memory. It runs the sharded engine on the CPU (the CPU backend's tensor_parallel),
// the exact emulation of a multi-GPU group that CI can run.
#pragma once

#include <barrier>
#include <memory>
#include <vector>

#include "engine/parallel/communicator.h"

namespace xlserve {

class InProcessGroup {
 public:
  explicit InProcessGroup(int ranks);
  ~InProcessGroup();
  InProcessGroup(const InProcessGroup&) = delete;
  InProcessGroup& operator=(const InProcessGroup&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  // Rank r's end of the group, for the thread that runs rank r.
  Communicator& rank(int r);

 private:
  class Member;

  std::barrier<> barrier_;
  std::vector<std::span<float>> published_;  // by rank, during a collective
  std::vector<std::unique_ptr<Member>> members_;
};

}  // namespace xlserve
