// PrometheusText: Prometheus' text exposition format (version 0.0.4), the one writer behind the
// server's and the gateway's /metrics. Each metric gets its HELP and TYPE lines once, then its
// samples; numbers are written exactly (integers in full, other values as the shortest text
// that reads back as the same double).
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xlserve::net {

// The Content-Type of a /metrics response in this format.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4";

class PrometheusText {
 public:
  void Counter(std::string_view name, std::string_view help, double value);
  void Gauge(std::string_view name, std::string_view help, double value);

  // One metric of `type` ("counter" or "gauge") with a sample per value of `label`:
  // name{label="value"} v.
  void Labelled(std::string_view name, std::string_view type, std::string_view help, std::string_view label,
                const std::vector<std::pair<std::string, double>>& samples);

  // A histogram: `counts` holds one count per upper bound in `bounds` (ascending), then the
  // count above the last bound; written as cumulative _bucket lines, _sum and _count.
  void Histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                 std::span<const uint64_t> counts, double sum);

  // Appends exposition text scraped from elsewhere with label="value" added to every sample,
  // so that the series of several sources stay apart. A HELP or TYPE line already written by
  // an earlier call is written once only.
  void AppendRelabelled(std::string_view text, std::string_view label, std::string_view value);

  const std::string& text() const { return out_; }

 private:
  void Describe(std::string_view name, std::string_view type, std::string_view help);

  std::string out_;
  std::set<std::string, std::less<>> relabelled_descriptions_;
};

}  // namespace xlserve::net
