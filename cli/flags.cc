#include "cli/flags.h"

#include <optional>
#include <sstream>

namespace xlserve::cli {

FlagSet::FlagSet(std::string command, std::string synopsis, std::string description)
    : command_(std::move(command)), synopsis_(std::move(synopsis)), description_(std::move(description)) {}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      return absl::InvalidArgumentError("unexpected argument '" + arg + "' (see " + command_ + " --help)");
    }
    std::string name = arg.substr(2);
    std::optional<std::string> inline_value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    Flag* flag = nullptr;
    for (Flag& f : flags_) {
      if (f.name == name) flag = &f;
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError("unknown flag --" + name + " (see " + command_ + " --help)");
    }
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else if (!flag->value_name.empty()) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError("--" + name + " needs a value");
      value = args[++i];
    }
    if (absl::Status st = flag->set(value, flag->is_list && flag->seen); !st.ok()) {
      return absl::InvalidArgumentError("--" + name + ": " + std::string(st.message()));
    }
    flag->seen = true;
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::ostringstream out;
  out << "usage: " << command_ << " " << synopsis_ << "\n\n" << description_ << "\n\nflags:\n";
  for (const Flag& f : flags_) {
    const std::string left = "  --" + f.name + (f.value_name.empty() ? "" : " " + f.value_name);
    out << left << std::string(left.size() < 28 ? 28 - left.size() : 1, ' ') << f.help;
    if (!f.default_text.empty()) out << " (default: " << f.default_text << ")";
    out << "\n";
  }
  out << "  --help                    show this help\n";
  return out.str();
}

}  // namespace xlserve::cli
