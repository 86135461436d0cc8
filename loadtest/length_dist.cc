#include "loadtest/length_dist.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>
#include <vector>

namespace xlserve::loadtest {
namespace {

bool ParseDouble(const std::string& text, double* out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return !text.empty() && ec == std::errc() && ptr == end && std::isfinite(*out);
}

}  // namespace

int LengthDist::Sample(std::mt19937_64& rng) const {
  double v = a;
  switch (kind) {
    case Kind::kFixed:
      break;
    case Kind::kUniform:
      v = double(std::uniform_int_distribution<long>(std::lround(a), std::lround(b))(rng));
      break;
    case Kind::kNormal:
      v = b > 0 ? std::normal_distribution<double>(a, b)(rng) : a;
      break;
  }
  return std::max(1, int(std::lround(v)));
}

std::string LengthDist::ToString() const {
  std::ostringstream os;
  switch (kind) {
    case Kind::kFixed:
      os << std::lround(a);
      break;
    case Kind::kUniform:
      os << "uniform:" << std::lround(a) << ":" << std::lround(b);
      break;
    case Kind::kNormal:
      os << "normal:" << a << ":" << b;
      break;
  }
  return os.str();
}

absl::StatusOr<LengthDist> ParseLengthDist(const std::string& flag, const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ':')) parts.push_back(part);
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError("--" + flag + ": '" + text + "': " + why);
  };
  if (parts.size() != 3) return bad("expected uniform:a:b or normal:mu:sigma");
  double a = 0, b = 0;
  if (!ParseDouble(parts[1], &a) || !ParseDouble(parts[2], &b)) return bad("bounds must be numbers");
  if (parts[0] == "uniform") {
    if (a < 1 || b < a) return bad("uniform needs 1 <= a <= b");
    return LengthDist{LengthDist::Kind::kUniform, a, b};
  }
  if (parts[0] == "normal") {
    if (a < 1 || b < 0) return bad("normal needs mu >= 1 and sigma >= 0");
    return LengthDist{LengthDist::Kind::kNormal, a, b};
  }
  return bad("unknown distribution '" + parts[0] + "' (uniform or normal)");
}

}  // namespace xlserve::loadtest
