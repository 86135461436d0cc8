#include "cli/flags.h"

#include <charconv>
#include <cmath>
#include <sstream>

namespace xlserve::cli {
namespace {

std::string Trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

template <typename T>
absl::Status ParseNumber(const std::string& name, const std::string& text, T* out) {
  const std::string t = Trim(text);
  const char* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, *out);
  if (t.empty() || ec != std::errc() || ptr != end) {
    return absl::InvalidArgumentError("--" + name + ": '" + text + "' is not a valid number");
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(*out)) {
      return absl::InvalidArgumentError("--" + name + ": '" + text + "' is not finite");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseIntList(const std::string& text, std::vector<int>* out) {
  out->clear();
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int v = 0;
    if (absl::Status st = ParseNumber("list", item, &v); !st.ok()) {
      return absl::InvalidArgumentError("'" + Trim(item) + "' in '" + text + "' is not an integer");
    }
    out->push_back(v);
  }
  if (out->empty()) return absl::InvalidArgumentError("empty list");
  return absl::OkStatus();
}

FlagSet::FlagSet(std::string command, std::string synopsis, std::string description)
    : command_(std::move(command)),
      synopsis_(std::move(synopsis)),
      description_(std::move(description)) {}

void FlagSet::Add(Flag flag) { flags_.push_back(std::move(flag)); }

void FlagSet::AddString(const std::string& name, std::string* value, const std::string& help) {
  Add({name, help, false, value->empty() ? "" : *value, [value](const std::string& v) {
         *value = v;
         return absl::OkStatus();
       }});
}

void FlagSet::AddOptionalString(const std::string& name, std::optional<std::string>* value,
                                const std::string& help) {
  Add({name, help, false, "", [value](const std::string& v) {
         *value = v;
         return absl::OkStatus();
       }});
}

void FlagSet::AddInt(const std::string& name, int* value, const std::string& help) {
  Add({name, help, false, std::to_string(*value),
       [name, value](const std::string& v) { return ParseNumber(name, v, value); }});
}

void FlagSet::AddOptionalInt(const std::string& name, std::optional<int>* value,
                             const std::string& help) {
  Add({name, help, false, "", [name, value](const std::string& v) {
         int parsed = 0;
         absl::Status st = ParseNumber(name, v, &parsed);
         if (st.ok()) *value = parsed;
         return st;
       }});
}

void FlagSet::AddDouble(const std::string& name, double* value, const std::string& help) {
  std::ostringstream def;
  def << *value;
  Add({name, help, false, def.str(),
       [name, value](const std::string& v) { return ParseNumber(name, v, value); }});
}

void FlagSet::AddOptionalDouble(const std::string& name, std::optional<double>* value,
                                const std::string& help) {
  Add({name, help, false, "", [name, value](const std::string& v) {
         double parsed = 0;
         absl::Status st = ParseNumber(name, v, &parsed);
         if (st.ok()) *value = parsed;
         return st;
       }});
}

void FlagSet::AddUint64(const std::string& name, uint64_t* value, const std::string& help) {
  Add({name, help, false, std::to_string(*value),
       [name, value](const std::string& v) { return ParseNumber(name, v, value); }});
}

void FlagSet::AddBool(const std::string& name, bool* value, const std::string& help) {
  Add({name, help, true, *value ? "true" : "", [name, value](const std::string& v) {
         if (v == "true" || v == "1" || v.empty()) {
           *value = true;
         } else if (v == "false" || v == "0") {
           *value = false;
         } else {
           return absl::InvalidArgumentError("--" + name + ": expected true or false, got '" + v + "'");
         }
         return absl::OkStatus();
       }});
}

void FlagSet::AddIntList(const std::string& name, std::optional<std::vector<int>>* value,
                         const std::string& help) {
  Add({name, help, false, "", [name, value](const std::string& v) {
         std::vector<int> parsed;
         if (absl::Status st = ParseIntList(v, &parsed); !st.ok()) {
           return absl::InvalidArgumentError("--" + name + ": " + std::string(st.message()));
         }
         *value = std::move(parsed);
         return absl::OkStatus();
       }});
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      return absl::InvalidArgumentError("unexpected argument '" + arg + "' (see " + command_ +
                                        " --help)");
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
    } else if (!flag->is_bool) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError("--" + name + " needs a value");
      value = args[++i];
    }
    if (absl::Status st = flag->set(value); !st.ok()) return st;
    flag->seen = true;
  }
  return absl::OkStatus();
}

bool FlagSet::was_set(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return f.seen;
  }
  return false;
}

std::string FlagSet::Usage() const {
  std::ostringstream out;
  out << "usage: " << command_ << " " << synopsis_ << "\n\n" << description_ << "\n\nflags:\n";
  for (const Flag& f : flags_) {
    std::string left = "  --" + f.name + (f.is_bool ? "" : " VALUE");
    out << left;
    out << std::string(left.size() < 28 ? 28 - left.size() : 1, ' ') << f.help;
    if (!f.default_text.empty()) out << " (default: " << f.default_text << ")";
    out << "\n";
  }
  out << "  --help                    show this help\n";
  return out.str();
}

}  // namespace xlserve::cli
