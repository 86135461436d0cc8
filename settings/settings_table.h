// SettingsTable<Config>: every setting of one command, in --help order (setting.h), and what
// is derived from it here: reading a JSON object or file of settings, and the range checks.
// The command-line flags derive from the same table (cli/flags.h).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "settings/setting.h"

namespace xlserve::settings {

template <typename Config>
using SettingsTable = std::vector<Setting<Config>>;

// The JSON object in `path`; NOT_FOUND when it cannot be read, INVALID_ARGUMENT when it is not
// a JSON object. Errors name the file.
absl::StatusOr<nlohmann::json> ReadJsonObjectFile(const std::string& path);

// Applies the keys of JSON object `j` over `config`. An unknown key or a value of the wrong
// type is INVALID_ARGUMENT naming the key; `config` may then be partly updated.
template <typename Config>
absl::Status ApplyJson(const SettingsTable<Config>& table, const nlohmann::json& j, Config* config) {
  if (!j.is_object()) return absl::InvalidArgumentError("settings must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    const Setting<Config>* setting = nullptr;
    for (const Setting<Config>& s : table) {
      if (s.key() == key) setting = &s;
    }
    if (setting == nullptr) return absl::InvalidArgumentError("unknown key \"" + key + "\"");
    if (absl::Status st = setting->SetFromJson(value, config); !st.ok()) {
      return absl::InvalidArgumentError("key \"" + key + "\": " + std::string(st.message()));
    }
  }
  return absl::OkStatus();
}

// ApplyJson of the object in file `path`; errors name the file.
template <typename Config>
absl::Status ApplyJsonFile(const SettingsTable<Config>& table, const std::string& path, Config* config) {
  absl::StatusOr<nlohmann::json> j = ReadJsonObjectFile(path);
  if (!j.ok()) return j.status();
  absl::Status st = ApplyJson(table, *j, config);
  if (!st.ok()) return absl::Status(st.code(), path + ": " + std::string(st.message()));
  return absl::OkStatus();
}

// The first setting outside its range, as INVALID_ARGUMENT naming its key and flag.
template <typename Config>
absl::Status CheckRanges(const SettingsTable<Config>& table, const Config& config) {
  for (const Setting<Config>& s : table) {
    if (absl::Status st = s.Check(config); !st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace xlserve::settings
