// The load driver: sends a workload through a LoadClient open-loop (Poisson arrivals at a
// rate, whatever the latency) or closed-loop (a fixed number of users, each sending its next
// request when the last one ends), bounded in request count and in time.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "loadtest/load_client.h"
#include "loadtest/stats.h"
#include "loadtest/workload.h"

namespace xlserve::loadtest {

struct LoadOptions {
  std::optional<double> rate;  // requests per second: open loop; absent: closed loop
  int concurrency = 1;         // closed loop: requests in flight
  int warmup = 0;              // the workload's first requests, sent but left out of the results
  double duration_s = 600;     // no request is sent after this many seconds from the start
  double request_timeout_s = 120;
  uint64_t seed = 0;        // of the arrival process
  int max_in_flight = 1024;  // open loop: arrivals beyond this wait for a free sender
};

struct LoadRun {
  std::vector<RequestResult> measured;  // sent requests after the warm-up, in workload order
  int warmup_sent = 0;
  int not_sent = 0;   // cut by the duration limit
  double duration_s = 0;  // first measured send to last measured completion
  std::optional<SteadyWindow> steady;  // closed loop only (ClosedLoopSteadyWindow)
};

// Sends `workload` (warm-up requests first) and returns when every sent request has ended:
// at most duration_s + request_timeout_s after the start. `on_done`, when set, is called from
// sender threads as each request ends (it must be thread-safe).
LoadRun RunLoad(LoadClient& client, const std::vector<WorkloadRequest>& workload, const LoadOptions& options,
                const std::function<void(const RequestResult&)>& on_done = nullptr);

}  // namespace xlserve::loadtest
