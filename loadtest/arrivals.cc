#include "loadtest/arrivals.h"

#include <random>

namespace xlserve::loadtest {

std::vector<double> PoissonArrivalTimes(double rate, int count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  std::vector<double> times(count > 0 ? count : 0);
  double t = 0;
  for (double& at : times) {
    t += gap(rng);
    at = t;
  }
  return times;
}

}  // namespace xlserve::loadtest
