#include "net/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "spdlog/spdlog.h"

namespace xlserve::net {
namespace {

std::string Sha256(std::string_view text) {
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), reinterpret_cast<unsigned char*>(digest.data()));
  return digest;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

absl::Status Add(std::string key, const std::string& origin, std::vector<std::string>* keys) {
  while (!key.empty() && (key.back() == '\r' || key.back() == ' ' || key.back() == '\t')) key.pop_back();
  while (!key.empty() && (key.front() == ' ' || key.front() == '\t')) key.erase(0, 1);
  if (key.empty()) return absl::OkStatus();
  for (unsigned char c : key) {
    if (c <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(origin + ": API keys must not hold spaces or control characters");
    }
  }
  keys->push_back(std::move(key));
  return absl::OkStatus();
}

absl::Status AddList(const std::string& list, const std::string& origin, std::vector<std::string>* keys) {
  std::stringstream ss(list);
  for (std::string key; std::getline(ss, key, ',');) {
    if (absl::Status st = Add(key, origin, keys); !st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace

ApiKeys::ApiKeys(const std::vector<std::string>& keys) {
  for (const std::string& k : keys) digests_.push_back(Sha256(k));
}

absl::StatusOr<ApiKeys> ApiKeys::Load(const std::string& file, const std::string& env_var, const std::string& flag) {
  std::vector<std::string> keys;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return absl::InvalidArgumentError("cannot read API key file " + file);
    const size_t before = keys.size();
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line[0] == '#') continue;
      if (absl::Status st = Add(line, file, &keys); !st.ok()) return st;
    }
    if (keys.size() == before) return absl::InvalidArgumentError("API key file " + file + " holds no key");
    struct stat info {};
    if (::stat(file.c_str(), &info) == 0 && (info.st_mode & S_IROTH)) {
      spdlog::warn("API key file {} is readable by every user", file);
    }
  }
  if (!env_var.empty()) {
    if (const char* value = std::getenv(env_var.c_str())) {
      if (absl::Status st = AddList(value, "$" + env_var, &keys); !st.ok()) return st;
    }
  }
  if (!flag.empty()) {
    spdlog::warn("an API key given on the command line is visible to every local user (ps); prefer a key file");
    if (absl::Status st = AddList(flag, "--api-key", &keys); !st.ok()) return st;
  }
  return ApiKeys(keys);
}

std::optional<std::string> ApiKeys::Match(std::string_view authorization) const {
  static constexpr std::string_view kScheme = "Bearer ";
  if (authorization.substr(0, kScheme.size()) != kScheme) return std::nullopt;
  // Comparing digests of equal length leaks nothing about the keys through timing.
  const std::string presented = Sha256(authorization.substr(kScheme.size()));
  bool found = false;
  for (const std::string& digest : digests_) {
    found |= CRYPTO_memcmp(presented.data(), digest.data(), digest.size()) == 0;
  }
  if (!found) return std::nullopt;
  return Hex(presented).substr(0, 16);
}

std::string KeyTag(std::string_view key) { return Hex(Sha256(key)).substr(0, 16); }

absl::StatusOr<std::string> LoadClientKey(const std::string& file, const std::string& env_var) {
  std::vector<std::string> keys;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return absl::InvalidArgumentError("cannot read API key file " + file);
    for (std::string line; keys.empty() && std::getline(in, line);) {
      if (line.empty() || line[0] == '#') continue;
      if (absl::Status st = Add(line, file, &keys); !st.ok()) return st;
    }
    if (keys.empty()) return absl::InvalidArgumentError("API key file " + file + " holds no key");
    return keys[0];
  }
  const char* value = env_var.empty() ? nullptr : std::getenv(env_var.c_str());
  if (!value) return std::string();
  if (absl::Status st = Add(value, "$" + env_var, &keys); !st.ok()) return st;
  return keys.empty() ? std::string() : keys[0];
}

absl::StatusOr<std::string> ReadCredentialFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  if (!in || content.str().empty()) return absl::InvalidArgumentError("cannot read " + path + " (or it is empty)");
  return content.str();
}

}  // namespace xlserve::net
