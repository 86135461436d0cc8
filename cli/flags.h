// FlagSet: typed command-line flags for one subcommand, parsed once into caller-owned values.
//
// Flags are `--name value` or `--name=value`; booleans are `--name` (or `--name=true|false`).
// Each Add* call binds a flag to a variable that keeps its value when the flag is absent, so
// defaults live in the caller's config struct.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace xlserve::cli {

class FlagSet {
 public:
  FlagSet(std::string command, std::string synopsis, std::string description);

  void AddString(const std::string& name, std::string* value, const std::string& help);
  void AddOptionalString(const std::string& name, std::optional<std::string>* value,
                         const std::string& help);
  void AddInt(const std::string& name, int* value, const std::string& help);
  void AddOptionalInt(const std::string& name, std::optional<int>* value, const std::string& help);
  void AddDouble(const std::string& name, double* value, const std::string& help);
  void AddOptionalDouble(const std::string& name, std::optional<double>* value,
                         const std::string& help);
  void AddUint64(const std::string& name, uint64_t* value, const std::string& help);
  void AddBool(const std::string& name, bool* value, const std::string& help);
  // A comma-separated list of integers, e.g. `--ids 1,2,3`.
  void AddIntList(const std::string& name, std::optional<std::vector<int>>* value,
                  const std::string& help);

  // Parses `args` (without the program and subcommand names). Sets help_requested() on
  // --help/-h and stops. Errors name the flag and the bad value.
  absl::Status Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_requested_; }
  bool was_set(const std::string& name) const;
  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    bool is_bool = false;
    std::string default_text;
    std::function<absl::Status(const std::string&)> set;
    bool seen = false;
  };
  void Add(Flag flag);

  std::string command_;
  std::string synopsis_;
  std::string description_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

// Parses "1,2,3" (spaces allowed) into integers; errors name the bad element.
absl::Status ParseIntList(const std::string& text, std::vector<int>* out);

}  // namespace xlserve::cli
