// LoadtestSettings: every setting of `xlserve loadtest` as the user gives it, the one table
// (LoadtestSettingsTable) from which its flags, --help text and range checks derive
// (settings/settings_table.h), and the LoadtestConfig a run takes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loadtest/loadtest.h"
#include "settings/settings_table.h"

namespace xlserve::loadtest {

struct LoadtestSettings {
  std::string grpc;
  std::string http;
  std::string api_key;
  std::string model_name;
  std::optional<double> rate;
  std::optional<int> concurrency;
  std::vector<double> sweep;
  int num_requests = 100;
  int warmup = 0;
  double duration_s = 300;
  double request_timeout_s = 60;
  int max_in_flight = 1024;
  int prompt_tokens = 32;
  std::string prompt_tokens_dist;
  int max_tokens = 16;
  std::string max_tokens_dist;
  std::string dataset;
  bool token_ids = false;
  int vocab_size = 0;
  bool ignore_eos = true;
  std::optional<double> temperature;
  uint64_t seed = 0;
  std::optional<double> slo_ttft_ms;
  std::optional<double> slo_tpot_ms;
  // Where the results go besides the table on stdout; empty: nowhere.
  std::string json;
  std::string sweep_csv;
  std::string plot;
};

// Every setting, in --help order.
const settings::SettingsTable<LoadtestSettings>& LoadtestSettingsTable();

// The run the settings describe, after the table's range checks and ValidateConfig;
// INVALID_ARGUMENT naming the flag at fault.
absl::StatusOr<LoadtestConfig> MakeLoadtestConfig(const LoadtestSettings& settings);

}  // namespace xlserve::loadtest
