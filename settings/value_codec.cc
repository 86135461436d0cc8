#include "settings/value_codec.h"

#include <charconv>
#include <cmath>

namespace xlserve::settings {
namespace {

std::string_view Trim(std::string_view s) {
  const size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

template <typename T>
absl::Status ParseNumber(std::string_view text, T* out) {
  const std::string_view t = Trim(text);
  T value{};
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size()) {
    return absl::InvalidArgumentError("'" + std::string(text) + "' is not " +
                                      (std::is_integral_v<T> ? "an integer" : "a number") +
                                      (ec == std::errc::result_out_of_range ? " in range" : ""));
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(value)) return absl::InvalidArgumentError("'" + std::string(text) + "' is not finite");
  }
  *out = value;
  return absl::OkStatus();
}

absl::Status WrongType(const char* expected, const nlohmann::json& j) {
  return absl::InvalidArgumentError(std::string("expected ") + expected + ", got " + j.dump());
}

}  // namespace

absl::Status SplitList(std::string_view text, std::vector<std::string_view>* items) {
  items->clear();
  for (size_t begin = 0; begin <= text.size();) {
    size_t end = text.find(',', begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = Trim(text.substr(begin, end - begin));
    if (item.empty()) return absl::InvalidArgumentError("'" + std::string(text) + "' has an empty item");
    items->push_back(item);
    begin = end + 1;
  }
  return absl::OkStatus();
}

absl::Status ValueCodec<bool>::FromText(std::string_view text, bool* out) {
  if (text.empty() || text == "true" || text == "1") {
    *out = true;
  } else if (text == "false" || text == "0") {
    *out = false;
  } else {
    return absl::InvalidArgumentError("expected true or false, got '" + std::string(text) + "'");
  }
  return absl::OkStatus();
}

absl::Status ValueCodec<bool>::FromJson(const nlohmann::json& j, bool* out) {
  if (!j.is_boolean()) return WrongType("true or false", j);
  *out = j.get<bool>();
  return absl::OkStatus();
}

absl::Status ValueCodec<int>::FromText(std::string_view text, int* out) { return ParseNumber(text, out); }

absl::Status ValueCodec<int>::FromJson(const nlohmann::json& j, int* out) {
  // json's get<int>() would wrap 4294967297 to 1: go through the text.
  if (!j.is_number_integer()) return WrongType("an integer", j);
  return ParseNumber(j.dump(), out);
}

absl::Status ValueCodec<uint64_t>::FromText(std::string_view text, uint64_t* out) { return ParseNumber(text, out); }

absl::Status ValueCodec<uint64_t>::FromJson(const nlohmann::json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return WrongType("a non-negative integer", j);
  *out = j.get<uint64_t>();
  return absl::OkStatus();
}

absl::Status ValueCodec<double>::FromText(std::string_view text, double* out) { return ParseNumber(text, out); }

absl::Status ValueCodec<double>::FromJson(const nlohmann::json& j, double* out) {
  if (!j.is_number()) return WrongType("a number", j);
  *out = j.get<double>();
  return absl::OkStatus();
}

std::string ValueCodec<double>::ToText(double v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : "?";
}

absl::Status ValueCodec<std::string>::FromJson(const nlohmann::json& j, std::string* out) {
  if (!j.is_string()) return WrongType("a string", j);
  *out = j.get<std::string>();
  return absl::OkStatus();
}

}  // namespace xlserve::settings
