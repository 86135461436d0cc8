// A small SVG line-plot writer: one or more panels side by side, each with linear axes, ticks,
// tick labels, axis labels, marked lines and a legend. Self-contained SVG 1.1 that browsers
// and rsvg-convert render.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace xlserve::loadtest {

struct PlotSeries {
  std::string name;   // legend text
  std::string color;  // any SVG colour, e.g. "#1f77b4"
  bool dashed = false;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in this order
};

struct PlotPanel {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<PlotSeries> series;
};

// Round tick values ("1, 2, 5 times a power of ten" steps) covering [lo, hi] with about
// `target` ticks; the first tick is <= lo and the last >= hi.
std::vector<double> NiceTicks(double lo, double hi, int target);

// The whole SVG document. Axes start at 0 (latencies and throughputs are non-negative) and
// extend to the next tick above the largest value.
std::string RenderSvgPlot(const std::string& title, const std::vector<PlotPanel>& panels);

}  // namespace xlserve::loadtest
