// The 1-D grid of MlstmStepBesideFresh (mlstm_step.cu): the decode step's blocks with new
// one-chunk prompts' blocks among them. Plain C++ that nvcc compiles too, so that CPU CI tests
// the layout the kernel walks (with single-block units the kernel spells Of() out, and the test
// checks that arithmetic: mlstm_step.cu says why).
//
// The grid is made of units of `unit` consecutive blocks: a head's column tiles when the step
// writes n and m (a unit is then one thread-block cluster), else single blocks. Unit u <
// FreshUnits() * every holds prompt blocks where u % every == every - 1 (the last such unit
// padded with idle blocks); every other unit holds step blocks, in the step grid's order (tile
// fastest, then head, then sequence). `every` spreads the prompts over the first 1 / spread of
// the launch (mlstm_step.cu says why).
#pragma once

#include <algorithm>

#include "base/host_device.h"

namespace xlserve::kernels {

struct FreshBesideLayout {
  int step_blocks = 0;   // tiles x heads x sequences
  int fresh_blocks = 0;  // the prompts' blocks
  int unit = 1;          // blocks a unit: 1, or the step's tiles a head (step_blocks is a multiple)
  int every = 1;

  // What a block of the grid runs: prompt block `index` (idle padding when index >=
  // fresh_blocks) or step block `index`.
  struct Role {
    bool fresh;
    int index;
  };

  static FreshBesideLayout Make(int step_blocks, int fresh_blocks, int unit, int spread) {
    FreshBesideLayout l{step_blocks, fresh_blocks, unit, 1};
    l.every = std::max(1, l.Units() / (spread * l.FreshUnits()));
    return l;
  }
  XLSERVE_HOST_DEVICE int FreshUnits() const { return (fresh_blocks + unit - 1) / unit; }
  XLSERVE_HOST_DEVICE int Units() const { return step_blocks / unit + FreshUnits(); }
  XLSERVE_HOST_DEVICE int GridBlocks() const { return Units() * unit; }
  XLSERVE_HOST_DEVICE Role Of(int block) const {
    const int u = block / unit, j = block % unit;
    if (u < FreshUnits() * every) {
      if (u % every == every - 1) return {true, u / every * unit + j};
      return {false, (u / every * (every - 1) + u % every) * unit + j};
    }
    return {false, (u - FreshUnits()) * unit + j};
  }
};

}  // namespace xlserve::kernels
