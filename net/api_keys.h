// ApiKeys: the bearer tokens a listener accepts. They come from a file or an environment
// variable (a command-line flag also works but shows in `ps`). Each key has a tag, a digest
// prefix that can scope state to the key (sessions) or name it in logs without revealing it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace xlserve::net {

class ApiKeys {
 public:
  ApiKeys() = default;
  explicit ApiKeys(const std::vector<std::string>& keys);

  // Keys from `file` (one per line; blank lines and lines starting with '#' skipped), from the
  // environment variable `env_var` and from `flag` (both comma-separated); any may be empty.
  // INVALID_ARGUMENT for an unreadable or empty file and for keys with spaces or control bytes.
  static absl::StatusOr<ApiKeys> Load(const std::string& file, const std::string& env_var, const std::string& flag);

  bool enabled() const { return !digests_.empty(); }
  size_t size() const { return digests_.size(); }

  // The tag of the key in an Authorization header value ("Bearer KEY"), or nullopt when it
  // carries none of ours. Every key is compared, in time independent of where they differ.
  std::optional<std::string> Match(std::string_view authorization) const;

 private:
  std::vector<std::string> digests_;  // SHA-256 of each key: comparisons never touch the keys
};

// 16 hex digits of the key's SHA-256.
std::string KeyTag(std::string_view key);

// The key a client sends: the first key in `file` (same format as ApiKeys::Load), else the
// value of the environment variable `env_var`; "" when neither is given.
absl::StatusOr<std::string> LoadClientKey(const std::string& file, const std::string& env_var);

// A whole credential file (PEM certificate or private key); INVALID_ARGUMENT naming the path
// when it cannot be read or is empty.
absl::StatusOr<std::string> ReadCredentialFile(const std::string& path);

}  // namespace xlserve::net
