#include "settings/settings_table.h"

#include <fstream>

namespace xlserve::settings {

absl::StatusOr<nlohmann::json> ReadJsonObjectFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open " + path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(path + " is not a JSON object");
  return j;
}

}  // namespace xlserve::settings
