#include <cstdio>

#include "cli/commands.h"

namespace xlserve::cli {

int ReportError(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "xlserve %s: error: %s\n", command.c_str(), message.c_str());
  return 1;
}

}  // namespace xlserve::cli
