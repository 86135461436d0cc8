#include "net/prometheus_text.h"

#include <charconv>
#include <cmath>

namespace xlserve::net {
namespace {

std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

// Label values escape backslash, double quote and newline (the format's only escapes).
std::string LabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
}

std::string Sample(std::string_view name, std::string_view labels, double value) {
  std::string line(name);
  if (!labels.empty()) line += "{" + std::string(labels) + "}";
  return line + " " + Number(value) + "\n";
}

}  // namespace

void PrometheusText::Describe(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP " + std::string(name) + " " + std::string(help) + "\n";
  out_ += "# TYPE " + std::string(name) + " " + std::string(type) + "\n";
}

void PrometheusText::Counter(std::string_view name, std::string_view help, double value) {
  Describe(name, "counter", help);
  out_ += Sample(name, "", value);
}

void PrometheusText::Gauge(std::string_view name, std::string_view help, double value) {
  Describe(name, "gauge", help);
  out_ += Sample(name, "", value);
}

void PrometheusText::Labelled(std::string_view name, std::string_view type, std::string_view help,
                              std::string_view label, const std::vector<std::pair<std::string, double>>& samples) {
  Describe(name, type, help);
  for (const auto& [label_value, value] : samples) {
    out_ += Sample(name, std::string(label) + "=\"" + LabelValue(label_value) + "\"", value);
  }
}

void PrometheusText::Histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                               std::span<const uint64_t> counts, double sum) {
  Describe(name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    const std::string le = i < bounds.size() ? Number(bounds[i]) : "+Inf";
    out_ += Sample(bucket, "le=\"" + le + "\"", static_cast<double>(cumulative));
  }
  out_ += Sample(std::string(name) + "_sum", "", sum);
  out_ += Sample(std::string(name) + "_count", "", static_cast<double>(cumulative));
}

void PrometheusText::AppendRelabelled(std::string_view text, std::string_view label, std::string_view value) {
  const std::string pair = std::string(label) + "=\"" + LabelValue(value) + "\"";
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (relabelled_descriptions_.insert(std::string(line)).second) out_ += std::string(line) + "\n";
      continue;
    }
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string_view::npos) continue;
    const std::string name(line.substr(0, name_end));
    if (line[name_end] == '{') {
      // name{a="b"} v -> name{label="value",a="b"} v; name{} v -> name{label="value"} v.
      const std::string_view rest = line.substr(name_end + 1);
      out_ += name + "{" + pair + (rest.empty() || rest[0] == '}' ? "" : ",") + std::string(rest) + "\n";
    } else {
      out_ += name + "{" + pair + "}" + std::string(line.substr(name_end)) + "\n";
    }
  }
}

}  // namespace xlserve::net
