// The grid MlstmStepBesideFresh walks (fresh_beside_layout.h): every step block and prompt block
// once, units that hold one kind only (so a head's tiles form one cluster), the prompts within
// the launch's first part, and with single-block units the layout before clusters.
#include "kernels/fresh_beside_layout.h"

#include <catch2/catch.hpp>

#include <vector>

namespace xlserve::kernels {
namespace {

constexpr int kSpread = 2;

TEST_CASE("the grid beside new prompts runs each step and prompt block once, a unit of one kind") {
  for (int tiles : {1, 4, 8}) {
    for (int seqs : {1, 3, 63}) {
      for (int fresh : {1, 5, 8, 37, 130}) {
        for (bool clusters : {false, true}) {
          const int heads = 8, step = tiles * heads * seqs, unit = clusters ? tiles : 1;
          const FreshBesideLayout l = FreshBesideLayout::Make(step, fresh, unit, kSpread);
          INFO("tiles " << tiles << " seqs " << seqs << " prompt blocks " << fresh << " unit " << unit);
          REQUIRE(l.GridBlocks() % unit == 0);
          std::vector<int> step_seen(step, 0), fresh_seen(fresh, 0);
          int idle = 0, last_fresh_unit = -1;
          for (int u = 0; u < l.Units(); ++u) {
            const FreshBesideLayout::Role first = l.Of(u * unit);
            for (int j = 0; j < unit; ++j) {
              const FreshBesideLayout::Role r = l.Of(u * unit + j);
              REQUIRE(r.fresh == first.fresh);
              if (r.fresh) {
                REQUIRE(r.index == first.index + j);
                if (r.index < fresh) {
                  ++fresh_seen[r.index];
                } else {
                  ++idle;
                }
                last_fresh_unit = u;
              } else {
                // A step unit is one head's tiles, in order: its cluster.
                REQUIRE(r.index == first.index + j);
                REQUIRE(r.index / unit == first.index / unit);
                REQUIRE(r.index >= 0);
                REQUIRE(r.index < step);
                ++step_seen[r.index];
              }
            }
          }
          for (int n : step_seen) CHECK(n == 1);
          for (int n : fresh_seen) CHECK(n == 1);
          CHECK(idle == l.FreshUnits() * unit - fresh);
          // The prompts start in the first part of the launch, not after every step block.
          CHECK(last_fresh_unit < l.FreshUnits() * l.every);
          CHECK(l.FreshUnits() * l.every <= l.Units());
        }
      }
    }
  }
}

// The arithmetic MlstmStepKernel spells out for single-block units (and had before clusters).
TEST_CASE("with single-block units the prompts sit where they did before clusters") {
  const FreshBesideLayout l = FreshBesideLayout::Make(4 * 8 * 63, 24, 1, kSpread);
  const int r = l.every;
  REQUIRE(r > 1);
  for (int b = 0; b < l.GridBlocks(); ++b) {
    const FreshBesideLayout::Role role = l.Of(b);
    if (b < l.fresh_blocks * r) {
      CHECK(role.fresh == (b % r == r - 1));
      CHECK(role.index == (role.fresh ? b / r : b / r * (r - 1) + b % r));
    } else {
      CHECK_FALSE(role.fresh);
      CHECK(role.index == b - l.fresh_blocks);
    }
  }
}

}  // namespace
}  // namespace xlserve::kernels
