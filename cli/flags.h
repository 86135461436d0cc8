// FlagSet: a subcommand's command-line flags, derived from its settings tables
// (settings/settings_table.h): every setting is --key with '-' for '_', parsed by the same
// codecs as the JSON settings, and listed by --help with its default.
//
// Flags are `--name value` or `--name=value`; switches (bools) are `--name` or
// `--name=true|false`; a list flag takes comma-separated items and may repeat.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "settings/settings_table.h"

namespace xlserve::cli {

class FlagSet {
 public:
  FlagSet(std::string command, std::string synopsis, std::string description);

  // Adds a flag for every setting of `table`, writing into `*config`. Both must outlive the
  // FlagSet; --help shows config's values at this call as the defaults.
  template <typename Config>
  void Add(const settings::SettingsTable<Config>& table, Config* config) {
    for (const settings::Setting<Config>& s : table) {
      std::string value_name = "VALUE";
      if (!s.choices().empty()) {
        value_name.clear();
        for (std::string_view choice : s.choices()) value_name += (value_name.empty() ? "" : "|") + std::string(choice);
      }
      // A switch that is off by default says nothing: the flag turns it on.
      std::string default_text = s.ValueText(*config);
      if (s.is_switch() && default_text == "false") default_text.clear();
      flags_.push_back({s.flag(), std::string(s.help()), s.is_switch() ? "" : value_name, default_text, s.is_list(),
                        [&s, config](const std::string& text, bool append) {
                          return s.SetFromText(text, append, config);
                        }});
    }
  }

  // Parses `args` (without the program and subcommand names). Sets help_requested() on
  // --help/-h and stops. Errors name the flag and the bad value.
  absl::Status Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_requested_; }
  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string value_name;  // empty for a switch
    std::string default_text;
    bool is_list = false;
    std::function<absl::Status(const std::string& text, bool append)> set;
    bool seen = false;
  };

  std::string command_;
  std::string synopsis_;
  std::string description_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

}  // namespace xlserve::cli
