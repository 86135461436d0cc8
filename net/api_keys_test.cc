#include "net/api_keys.h"

#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>

namespace xlserve::net {
namespace {

std::string TempFile(const std::string& text) {
  char path[] = "/tmp/api_keys_test.XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ofstream(path) << text;
  return path;
}

TEST_CASE("keys from a file, the environment and a flag all match; others do not") {
  const std::string file = TempFile("# production keys\nfile-key-1\n\n  file-key-2  \r\n");
  ::setenv("API_KEYS_TEST_VAR", "env-a,env-b", 1);
  absl::StatusOr<ApiKeys> keys = ApiKeys::Load(file, "API_KEYS_TEST_VAR", "flag-key");
  REQUIRE(keys.ok());
  CHECK(keys->size() == 5);
  for (const char* k : {"file-key-1", "file-key-2", "env-a", "env-b", "flag-key"}) {
    CHECK(keys->Match(std::string("Bearer ") + k) == KeyTag(k));
  }
  CHECK_FALSE(keys->Match("Bearer file-key-"));
  CHECK_FALSE(keys->Match("Bearer "));
  CHECK_FALSE(keys->Match("file-key-1"));
  CHECK_FALSE(keys->Match("Basic file-key-1"));
  CHECK(KeyTag("env-a") != KeyTag("env-b"));
  CHECK(KeyTag("env-a").size() == 16);
  std::remove(file.c_str());
  ::unsetenv("API_KEYS_TEST_VAR");
}

TEST_CASE("no source means authentication is off") {
  absl::StatusOr<ApiKeys> keys = ApiKeys::Load("", "API_KEYS_TEST_UNSET", "");
  REQUIRE(keys.ok());
  CHECK_FALSE(keys->enabled());
}

TEST_CASE("bad key sources are errors") {
  CHECK_FALSE(ApiKeys::Load("/nonexistent/keys", "", "").ok());
  const std::string empty = TempFile("# nothing here\n\n");
  CHECK_FALSE(ApiKeys::Load(empty, "", "").ok());
  const std::string spaced = TempFile("two words\n");
  CHECK_FALSE(ApiKeys::Load(spaced, "", "").ok());
  std::remove(empty.c_str());
  std::remove(spaced.c_str());
}

}  // namespace
}  // namespace xlserve::net
