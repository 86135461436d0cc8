// Setting<Config>: one row of a command's settings table. A row names a JSON key (the
// command-line flag is the key with '-' for '_'), the Config member it sets, its help text and
// the values it accepts: a numeric range, or for an enum member a fixed set of names. The table
// (SettingsTable<Config>, settings_table.h) is the only place a command lists its settings;
// the JSON reader, the flags, --help and the range checks all derive from it.
#pragma once

#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "settings/value_codec.h"

namespace xlserve::settings {

// The names by which users choose an enum's values, e.g. {{Device::kCpu, "cpu"}, ...}.
template <typename E>
using EnumName = std::pair<E, std::string_view>;

template <typename E, size_t N>
constexpr std::string_view NameOf(E value, const EnumName<E> (&names)[N]) {
  for (const auto& [v, name] : names) {
    if (v == value) return name;
  }
  return "?";
}

template <typename E, size_t N>
constexpr std::optional<E> ValueOf(std::string_view name, const EnumName<E> (&names)[N]) {
  for (const auto& [v, n] : names) {
    if (n == name) return v;
  }
  return std::nullopt;
}

// The accepted range of a number, of an optional number when set, of each number of a list.
struct Range {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
};

template <typename Config>
class Setting {
 public:
  // A plain member (see value_codec.h for the types).
  template <typename T>
  Setting(std::string_view key, T Config::*member, std::string_view help, Range range = {})
      : key_(key), help_(help), is_switch_(std::is_same_v<T, bool>), is_list_(IsList<T>::value) {
    set_text_ = [member](std::string_view text, bool append, Config* c) {
      if constexpr (IsList<T>::value) {
        T items;
        absl::Status st = ValueCodec<T>::FromText(text, &items);
        if (!st.ok()) return st;
        if (!append) (c->*member).clear();
        (c->*member).insert((c->*member).end(), items.begin(), items.end());
        return absl::OkStatus();
      } else {
        return ValueCodec<T>::FromText(text, &(c->*member));
      }
    };
    set_json_ = [member](const nlohmann::json& j, Config* c) { return ValueCodec<T>::FromJson(j, &(c->*member)); };
    show_ = [member](const Config& c) { return ValueCodec<T>::ToText(c.*member); };
    check_ = [member, range](const Config& c) { return InRange(c.*member, range); };
  }

  // An enum member, spelt as one of `names` in flags and JSON.
  template <typename E, size_t N>
  Setting(std::string_view key, E Config::*member, const EnumName<E> (&names)[N], std::string_view help)
      : key_(key), help_(help) {
    static_assert(std::is_enum_v<E>);
    for (const auto& [value, name] : names) choices_.push_back(name);
    set_text_ = [this_choices = choices_, member, &names](std::string_view text, bool, Config* c) {
      const std::optional<E> value = ValueOf(text, names);
      if (!value) return NotAChoice(text, this_choices);
      c->*member = *value;
      return absl::OkStatus();
    };
    set_json_ = [set = set_text_](const nlohmann::json& j, Config* c) {
      if (!j.is_string()) return absl::InvalidArgumentError("expected a string, got " + j.dump());
      return set(j.get<std::string>(), false, c);
    };
    show_ = [member, &names](const Config& c) { return std::string(NameOf(c.*member, names)); };
    check_ = [](const Config&) { return absl::OkStatus(); };
  }

  std::string_view key() const { return key_; }
  // "max_num_seqs" -> "max-num-seqs".
  std::string flag() const {
    std::string flag(key_);
    for (char& ch : flag) ch = ch == '_' ? '-' : ch;
    return flag;
  }
  std::string_view help() const { return help_; }
  // The names an enum setting accepts; empty for other settings.
  const std::vector<std::string_view>& choices() const { return choices_; }
  // A bool: a flag without a value sets it.
  bool is_switch() const { return is_switch_; }
  // A list: a repeated flag appends to the first occurrence's items.
  bool is_list() const { return is_list_; }

  // Errors describe the value; callers prefix the flag or key.
  absl::Status SetFromText(std::string_view text, bool append, Config* config) const {
    return set_text_(text, append, config);
  }
  absl::Status SetFromJson(const nlohmann::json& value, Config* config) const { return set_json_(value, config); }
  // The value as flag text; empty for an unset optional or an empty list or string.
  std::string ValueText(const Config& config) const { return show_(config); }
  // The range check; the message names the key and the flag.
  absl::Status Check(const Config& config) const {
    absl::Status st = check_(config);
    if (st.ok()) return st;
    return absl::InvalidArgumentError(std::string(key_) + " (--" + flag() + ") " + std::string(st.message()));
  }

 private:
  template <typename T>
  struct IsList : std::false_type {};
  template <typename T>
  struct IsList<std::vector<T>> : std::true_type {};

  static absl::Status NotAChoice(std::string_view text, const std::vector<std::string_view>& choices) {
    std::string list;
    for (std::string_view c : choices) list += (list.empty() ? "" : ", ") + std::string(c);
    return absl::InvalidArgumentError("'" + std::string(text) + "' is not one of " + list);
  }

  template <typename T>
  static absl::Status InRange(const T& v, const Range& r) {
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      if (double(v) >= r.min && double(v) <= r.max) return absl::OkStatus();
      return absl::InvalidArgumentError("must be in [" + ValueCodec<double>::ToText(r.min) + ", " +
                                        ValueCodec<double>::ToText(r.max) + "], got " +
                                        ValueCodec<double>::ToText(double(v)));
    } else if constexpr (IsList<T>::value) {
      for (const auto& item : v) {
        if (absl::Status st = InRange(item, r); !st.ok()) return st;
      }
      return absl::OkStatus();
    } else if constexpr (requires { v.has_value(); }) {
      return v.has_value() ? InRange(*v, r) : absl::OkStatus();
    } else {
      return absl::OkStatus();
    }
  }

  std::string_view key_;
  std::string_view help_;
  bool is_switch_ = false;
  bool is_list_ = false;
  std::vector<std::string_view> choices_;
  std::function<absl::Status(std::string_view, bool, Config*)> set_text_;
  std::function<absl::Status(const nlohmann::json&, Config*)> set_json_;
  std::function<std::string(const Config&)> show_;
  std::function<absl::Status(const Config&)> check_;
};

}  // namespace xlserve::settings
