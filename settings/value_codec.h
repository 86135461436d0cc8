// ValueCodec<T>: how a setting of type T is read from command-line text and from JSON, and
// written back as text (for --help defaults). Every settings table and flag goes through
// these, so a number or a list is parsed the same way by every command.
//
// Types: bool, int, uint64_t, double, std::string, std::optional<T> of those (unset until
// given; JSON null unsets), and std::vector<T> (comma-separated text, a JSON array).
// Errors describe the value, not the setting: callers prefix the flag or key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace xlserve::settings {

template <typename T>
struct ValueCodec;

template <>
struct ValueCodec<bool> {
  static absl::Status FromText(std::string_view text, bool* out);  // true|false|1|0, "" is true
  static absl::Status FromJson(const nlohmann::json& j, bool* out);
  static std::string ToText(bool v) { return v ? "true" : "false"; }
};

template <>
struct ValueCodec<int> {
  static absl::Status FromText(std::string_view text, int* out);
  static absl::Status FromJson(const nlohmann::json& j, int* out);
  static std::string ToText(int v) { return std::to_string(v); }
};

template <>
struct ValueCodec<uint64_t> {
  static absl::Status FromText(std::string_view text, uint64_t* out);
  static absl::Status FromJson(const nlohmann::json& j, uint64_t* out);
  static std::string ToText(uint64_t v) { return std::to_string(v); }
};

template <>
struct ValueCodec<double> {
  static absl::Status FromText(std::string_view text, double* out);  // finite numbers only
  static absl::Status FromJson(const nlohmann::json& j, double* out);
  static std::string ToText(double v);
};

template <>
struct ValueCodec<std::string> {
  static absl::Status FromText(std::string_view text, std::string* out) {
    out->assign(text);
    return absl::OkStatus();
  }
  static absl::Status FromJson(const nlohmann::json& j, std::string* out);
  static std::string ToText(const std::string& v) { return v; }
};

template <typename T>
struct ValueCodec<std::optional<T>> {
  static absl::Status FromText(std::string_view text, std::optional<T>* out) {
    T value{};
    absl::Status st = ValueCodec<T>::FromText(text, &value);
    if (st.ok()) *out = std::move(value);
    return st;
  }
  static absl::Status FromJson(const nlohmann::json& j, std::optional<T>* out) {
    if (j.is_null()) {
      out->reset();
      return absl::OkStatus();
    }
    T value{};
    absl::Status st = ValueCodec<T>::FromJson(j, &value);
    if (st.ok()) *out = std::move(value);
    return st;
  }
  static std::string ToText(const std::optional<T>& v) { return v ? ValueCodec<T>::ToText(*v) : ""; }
};

// "1, 2,3" into its trimmed items; an empty text or item is an error.
absl::Status SplitList(std::string_view text, std::vector<std::string_view>* items);

template <typename T>
struct ValueCodec<std::vector<T>> {
  static absl::Status FromText(std::string_view text, std::vector<T>* out) {
    std::vector<std::string_view> items;
    if (absl::Status st = SplitList(text, &items); !st.ok()) return st;
    std::vector<T> values(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      if (absl::Status st = ValueCodec<T>::FromText(items[i], &values[i]); !st.ok()) {
        return absl::InvalidArgumentError("item " + std::to_string(i + 1) + " of '" + std::string(text) +
                                          "': " + std::string(st.message()));
      }
    }
    *out = std::move(values);
    return absl::OkStatus();
  }
  static absl::Status FromJson(const nlohmann::json& j, std::vector<T>* out) {
    if (!j.is_array()) return absl::InvalidArgumentError("expected an array, got " + j.dump());
    std::vector<T> values(j.size());
    for (size_t i = 0; i < j.size(); ++i) {
      if (absl::Status st = ValueCodec<T>::FromJson(j[i], &values[i]); !st.ok()) return st;
    }
    *out = std::move(values);
    return absl::OkStatus();
  }
  static std::string ToText(const std::vector<T>& v) {
    std::string text;
    for (const T& item : v) text += (text.empty() ? "" : ",") + ValueCodec<T>::ToText(item);
    return text;
  }
};

}  // namespace xlserve::settings
