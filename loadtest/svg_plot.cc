#include "loadtest/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace xlserve::loadtest {
namespace {

// Panel geometry in SVG user units (pixels): the plot area sits inside these margins, and the
// bottom margin holds tick labels, the x label and the legend row.
constexpr double kPanelWidth = 520, kPanelHeight = 400;
constexpr double kLeft = 72, kRight = 24, kTop = 44, kBottom = 100;
constexpr double kTitleHeight = 36;
constexpr int kTargetTicks = 6;

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

std::string TickLabel(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", std::abs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

std::string Text(double x, double y, const std::string& anchor, const std::string& text, int size = 12,
                 const std::string& extra = "") {
  return "<text x=\"" + Num(x) + "\" y=\"" + Num(y) + "\" text-anchor=\"" + anchor + "\" font-size=\"" +
         std::to_string(size) + "\"" + extra + ">" + Escape(text) + "</text>\n";
}

std::string Line(double x1, double y1, double x2, double y2, const std::string& style) {
  return "<line x1=\"" + Num(x1) + "\" y1=\"" + Num(y1) + "\" x2=\"" + Num(x2) + "\" y2=\"" + Num(y2) + "\" " + style +
         "/>\n";
}

std::string Panel(const PlotPanel& panel, double offset_x, double offset_y) {
  double max_x = 0, max_y = 0;
  for (const PlotSeries& s : panel.series) {
    for (const auto& [x, y] : s.points) {
      max_x = std::max(max_x, x);
      max_y = std::max(max_y, y);
    }
  }
  const std::vector<double> xt = NiceTicks(0, max_x, kTargetTicks);
  const std::vector<double> yt = NiceTicks(0, max_y, kTargetTicks);
  const double x0 = offset_x + kLeft, x1 = offset_x + kPanelWidth - kRight;
  const double y0 = offset_y + kPanelHeight - kBottom, y1 = offset_y + kTop;
  auto px = [&](double x) { return x0 + (x - xt.front()) / (xt.back() - xt.front()) * (x1 - x0); };
  auto py = [&](double y) { return y0 - (y - yt.front()) / (yt.back() - yt.front()) * (y0 - y1); };

  std::string svg = "<g class=\"panel\">\n";
  svg += Text((x0 + x1) / 2, offset_y + 26, "middle", panel.title, 14, " font-weight=\"bold\"");
  for (double t : yt) {
    svg += Line(x0, py(t), x1, py(t), "stroke=\"#e4e4e4\" stroke-width=\"1\"");
    svg += Line(x0 - 5, py(t), x0, py(t), "stroke=\"#333\" stroke-width=\"1\"");
    svg += Text(x0 - 8, py(t) + 4, "end", TickLabel(t), 11);
  }
  for (double t : xt) {
    svg += Line(px(t), y0, px(t), y0 + 5, "stroke=\"#333\" stroke-width=\"1\"");
    svg += Text(px(t), y0 + 19, "middle", TickLabel(t), 11);
  }
  svg += "<g class=\"axes\">\n";
  svg += Line(x0, y0, x1, y0, "stroke=\"#333\" stroke-width=\"1.5\"");
  svg += Line(x0, y0, x0, y1, "stroke=\"#333\" stroke-width=\"1.5\"");
  svg += "</g>\n";
  svg += Text((x0 + x1) / 2, y0 + 40, "middle", panel.x_label, 12);
  const double ylx = offset_x + 18, yly = (y0 + y1) / 2;
  svg += Text(ylx, yly, "middle", panel.y_label, 12,
              " transform=\"rotate(-90 " + Num(ylx) + " " + Num(yly) + ")\"");

  for (const PlotSeries& s : panel.series) {
    const std::string dash = s.dashed ? " stroke-dasharray=\"6 4\"" : "";
    std::string points;
    for (const auto& [x, y] : s.points) points += Num(px(x)) + "," + Num(py(y)) + " ";
    svg += "<polyline class=\"series\" fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"2\"" + dash +
           " points=\"" + points + "\"/>\n";
    for (const auto& [x, y] : s.points) {
      svg += "<circle cx=\"" + Num(px(x)) + "\" cy=\"" + Num(py(y)) + "\" r=\"3.5\" fill=\"" + s.color + "\"/>\n";
    }
  }

  svg += "<g class=\"legend\">\n";
  const double legend_y = y0 + 68;
  const double slot = (x1 - x0) / std::max<size_t>(1, panel.series.size());
  for (size_t i = 0; i < panel.series.size(); ++i) {
    const PlotSeries& s = panel.series[i];
    const double lx = x0 + slot * double(i);
    svg += Line(lx, legend_y - 4, lx + 26, legend_y - 4,
                "stroke=\"" + s.color + "\" stroke-width=\"2\"" + (s.dashed ? " stroke-dasharray=\"6 4\"" : ""));
    svg += Text(lx + 32, legend_y, "start", s.name, 12);
  }
  svg += "</g>\n</g>\n";
  return svg;
}

}  // namespace

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(1, target - 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * magnitude;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  const double first = std::floor(lo / step) * step;
  for (double t = first; t < hi + step * 0.999; t += step) ticks.push_back(std::round(t / step) * step);
  if (ticks.size() < 2) ticks.push_back(ticks.back() + step);
  return ticks;
}

std::string RenderSvgPlot(const std::string& title, const std::vector<PlotPanel>& panels) {
  const double width = kPanelWidth * double(std::max<size_t>(1, panels.size()));
  const double height = kPanelHeight + kTitleHeight;
  std::string svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + Num(width) + "\" height=\"" +
         Num(height) + "\" viewBox=\"0 0 " + Num(width) + " " + Num(height) + "\" font-family=\"sans-serif\">\n";
  svg += "<title>" + Escape(title) + "</title>\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += Text(width / 2, 24, "middle", title, 16, " font-weight=\"bold\"");
  for (size_t i = 0; i < panels.size(); ++i) svg += Panel(panels[i], kPanelWidth * double(i), kTitleHeight);
  svg += "</svg>\n";
  return svg;
}

}  // namespace xlserve::loadtest
