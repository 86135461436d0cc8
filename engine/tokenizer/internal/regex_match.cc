// The backtracking interpreter for Regex::Program. Backtrack points live on an explicit stack, so
// long runs (100 KB of letters) need no deep recursion; only lookahead recurses, once per nesting.
#include <vector>

#include "engine/tokenizer/internal/regex.h"

namespace xlserve::tokenizer_internal {
namespace {

struct Backtrack {
  std::uint32_t pc;
  std::size_t pos;
  // For a kRun: the shortest length still allowed; `pos` is the current end, retried one shorter.
  std::size_t run_floor;
  bool is_run;
};

}  // namespace

bool Regex::Run(std::uint32_t start_pc, std::span<const char32_t> text, std::size_t start_pos,
                std::size_t* end) const {
  const Program& prog = *program_;
  std::vector<Backtrack> stack;
  std::uint32_t pc = start_pc;
  std::size_t pos = start_pos;
  while (true) {
    bool failed = false;
    const Inst& inst = prog.code[pc];
    switch (inst.op) {
      case Op::kClass:
        if (pos < text.size() && prog.classes[inst.arg].Matches(text[pos])) {
          ++pos;
          ++pc;
        } else {
          failed = true;
        }
        break;
      case Op::kRun: {
        const CharClass& cls = prog.classes[inst.arg];
        const std::size_t limit = inst.max == kUnbounded
                                      ? text.size()
                                      : std::min<std::size_t>(text.size(), pos + inst.max);
        std::size_t run_end = pos;
        while (run_end < limit && cls.Matches(text[run_end])) ++run_end;
        if (run_end - pos < inst.min) {
          failed = true;
          break;
        }
        const std::size_t floor = pos + inst.min;
        if (run_end > floor) stack.push_back({pc + 1, run_end, floor, true});
        pos = run_end;
        ++pc;
        break;
      }
      case Op::kSplit:
        stack.push_back({inst.y, pos, 0, false});
        pc = inst.x;
        break;
      case Op::kJump:
        pc = inst.x;
        break;
      case Op::kLookahead: {
        std::size_t ignored;
        const bool matched = Run(pc + 1, text, pos, &ignored);
        if (matched == (inst.arg == 0)) {
          pc = inst.x;
        } else {
          failed = true;
        }
        break;
      }
      case Op::kAssert: {
        bool ok = false;
        switch (inst.arg) {
          case kLineStart:
            ok = pos == 0 || text[pos - 1] == '\n';
            break;
          case kLineEnd:
            ok = pos == text.size() || text[pos] == '\n';
            break;
          case kTextStart:
            ok = pos == 0;
            break;
          case kTextEnd:
            ok = pos == text.size();
            break;
          case kTextEndOrNewline:
            ok = pos == text.size() || (pos + 1 == text.size() && text[pos] == '\n');
            break;
        }
        if (ok) {
          ++pc;
        } else {
          failed = true;
        }
        break;
      }
      case Op::kMatch:
        *end = pos;
        return true;
    }
    if (!failed) continue;
    if (stack.empty()) return false;
    Backtrack& top = stack.back();
    pc = top.pc;
    if (top.is_run) {
      // Give back one code point of the run; drop the entry once it reaches its floor.
      pos = --top.pos;
      if (top.pos == top.run_floor) stack.pop_back();
    } else {
      pos = top.pos;
      stack.pop_back();
    }
  }
}

bool Regex::Search(std::span<const char32_t> text, std::size_t from, Match* match) const {
  for (std::size_t start = from; start <= text.size(); ++start) {
    std::size_t end;
    if (Run(0, text, start, &end)) {
      *match = {start, end};
      return true;
    }
  }
  return false;
}

}  // namespace xlserve::tokenizer_internal
