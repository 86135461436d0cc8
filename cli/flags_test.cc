#include "cli/flags.h"

#include <catch2/catch.hpp>

namespace xlserve::cli {
namespace {

struct Parsed {
  std::string model;
  int n = 5;
  double t = 0.5;
  bool json = false;
  std::optional<std::vector<int>> ids;
  std::optional<double> temp;
};

FlagSet MakeFlags(Parsed& p) {
  FlagSet f("xlserve test", "[flags]", "A test command.");
  f.AddString("model", &p.model, "model dir");
  f.AddInt("n", &p.n, "count");
  f.AddDouble("t", &p.t, "value");
  f.AddBool("json", &p.json, "json output");
  f.AddIntList("ids", &p.ids, "ids");
  f.AddOptionalDouble("temperature", &p.temp, "temperature");
  return f;
}

TEST_CASE("flags parse both spellings and keep defaults") {
  Parsed p;
  FlagSet f = MakeFlags(p);
  REQUIRE(f.Parse({"--model", "dir", "--t=1.25", "--json", "--ids", "1, 2,3"}).ok());
  CHECK(p.model == "dir");
  CHECK(p.n == 5);
  CHECK(p.t == 1.25);
  CHECK(p.json);
  CHECK(*p.ids == std::vector<int>{1, 2, 3});
  CHECK_FALSE(p.temp.has_value());
  CHECK(f.was_set("model"));
  CHECK_FALSE(f.was_set("n"));
}

TEST_CASE("flag errors name the flag") {
  Parsed p;
  FlagSet f = MakeFlags(p);
  absl::Status st = f.Parse({"--n", "abc"});
  REQUIRE_FALSE(st.ok());
  CHECK(std::string(st.message()).find("--n") != std::string::npos);

  Parsed p2;
  FlagSet f2 = MakeFlags(p2);
  st = f2.Parse({"--bogus", "1"});
  REQUIRE_FALSE(st.ok());
  CHECK(std::string(st.message()).find("unknown flag --bogus") != std::string::npos);

  Parsed p3;
  FlagSet f3 = MakeFlags(p3);
  CHECK_FALSE(f3.Parse({"--model"}).ok());
  CHECK_FALSE(f3.Parse({"--ids", "1,x"}).ok());
  CHECK_FALSE(f3.Parse({"--t", "nan"}).ok());
  CHECK_FALSE(f3.Parse({"stray"}).ok());
  CHECK_FALSE(f3.Parse({"--json=maybe"}).ok());
}

TEST_CASE("--help stops parsing and usage lists every flag") {
  Parsed p;
  FlagSet f = MakeFlags(p);
  REQUIRE(f.Parse({"--help", "--bogus"}).ok());
  CHECK(f.help_requested());
  const std::string usage = f.Usage();
  for (const char* name : {"--model", "--n", "--t", "--json", "--ids", "--temperature", "--help"}) {
    CHECK(usage.find(name) != std::string::npos);
  }
}

}  // namespace
}  // namespace xlserve::cli
