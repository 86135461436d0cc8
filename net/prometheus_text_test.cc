#include "net/prometheus_text.h"

#include <catch2/catch.hpp>

namespace xlserve::net {
namespace {

TEST_CASE("scalars carry HELP and TYPE, and numbers are written exactly") {
  PrometheusText out;
  out.Counter("a_total", "As seen.", 12345678901234.0);
  out.Gauge("b", "A level.", 0.1);
  CHECK(out.text() ==
        "# HELP a_total As seen.\n# TYPE a_total counter\na_total 12345678901234\n"
        "# HELP b A level.\n# TYPE b gauge\nb 0.1\n");
}

TEST_CASE("labelled samples escape their label values") {
  PrometheusText out;
  out.Labelled("m", "gauge", "Per tier.", "tier", {{"device", 1}, {"a\"b\\c\nd", 2}});
  CHECK(out.text() ==
        "# HELP m Per tier.\n# TYPE m gauge\nm{tier=\"device\"} 1\nm{tier=\"a\\\"b\\\\c\\nd\"} 2\n");
}

TEST_CASE("histograms write cumulative buckets, +Inf, sum and count") {
  PrometheusText out;
  const double bounds[] = {0.5, 1};
  const uint64_t counts[] = {2, 0, 3};
  out.Histogram("h", "Times.", bounds, counts, 7.25);
  CHECK(out.text() ==
        "# HELP h Times.\n# TYPE h histogram\n"
        "h_bucket{le=\"0.5\"} 2\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 5\nh_sum 7.25\nh_count 5\n");
}

TEST_CASE("relabelled text keeps sources apart and describes each metric once") {
  const std::string scraped =
      "# HELP x_total X.\n# TYPE x_total counter\nx_total 3\ny{tier=\"host\"} 4\nz{} 5\n\n";
  PrometheusText out;
  out.AppendRelabelled(scraped, "upstream", "10.0.0.1:9090");
  out.AppendRelabelled(scraped, "upstream", "10.0.0.2:9090");
  CHECK(out.text() ==
        "# HELP x_total X.\n# TYPE x_total counter\n"
        "x_total{upstream=\"10.0.0.1:9090\"} 3\ny{upstream=\"10.0.0.1:9090\",tier=\"host\"} 4\n"
        "z{upstream=\"10.0.0.1:9090\"} 5\n"
        "x_total{upstream=\"10.0.0.2:9090\"} 3\ny{upstream=\"10.0.0.2:9090\",tier=\"host\"} 4\n"
        "z{upstream=\"10.0.0.2:9090\"} 5\n");
}

}  // namespace
}  // namespace xlserve::net
