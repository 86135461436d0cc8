// Arrival times of an open-loop run: a Poisson process, i.e. exponential inter-arrival gaps
// with mean 1/rate, so bursts happen as they do with independent users.
#pragma once

#include <cstdint>
#include <vector>

namespace xlserve::loadtest {

// Returns `count` non-decreasing offsets in seconds from the run's start (the first request
// arrives after one gap, not at 0). `rate` is requests per second and must be > 0.
std::vector<double> PoissonArrivalTimes(double rate, int count, uint64_t seed);

}  // namespace xlserve::loadtest
