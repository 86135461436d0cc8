#include "cli/flags.h"

#include <catch2/catch.hpp>

namespace xlserve::cli {
namespace {

enum class Mode { kOff, kOn };
constexpr settings::EnumName<Mode> kModeNames[] = {{Mode::kOff, "off"}, {Mode::kOn, "on"}};

struct Parsed {
  std::string model;
  int n = 5;
  double t = 0.5;
  bool json = false;
  std::vector<int> ids;
  std::optional<double> temperature;
  Mode mode = Mode::kOff;
};

const settings::SettingsTable<Parsed>& Table() {
  static const settings::SettingsTable<Parsed> table = {
      {"model", &Parsed::model, "model dir"},
      {"n", &Parsed::n, "count"},
      {"t", &Parsed::t, "value"},
      {"json", &Parsed::json, "json output"},
      {"ids", &Parsed::ids, "ids"},
      {"temperature", &Parsed::temperature, "temperature"},
      {"mode", &Parsed::mode, kModeNames, "mode"},
  };
  return table;
}

FlagSet MakeFlags(Parsed& p) {
  FlagSet f("xlserve test", "[flags]", "A test command.");
  f.Add(Table(), &p);
  return f;
}

TEST_CASE("flags parse both spellings and keep defaults") {
  Parsed p;
  FlagSet f = MakeFlags(p);
  REQUIRE(f.Parse({"--model", "dir", "--t=1.25", "--json", "--ids", "1, 2,3", "--ids=4", "--mode", "on"}).ok());
  CHECK(p.model == "dir");
  CHECK(p.n == 5);
  CHECK(p.t == 1.25);
  CHECK(p.json);
  CHECK(p.ids == std::vector<int>{1, 2, 3, 4});
  CHECK_FALSE(p.temperature.has_value());
  CHECK(p.mode == Mode::kOn);
}

TEST_CASE("flag errors name the flag and the value") {
  Parsed p;
  FlagSet f = MakeFlags(p);
  absl::Status st = f.Parse({"--n", "abc"});
  CHECK(std::string(st.message()) == "--n: 'abc' is not an integer");
  st = f.Parse({"--bogus", "1"});
  CHECK(std::string(st.message()).find("unknown flag --bogus") != std::string::npos);
  st = f.Parse({"--mode", "auto"});
  CHECK(std::string(st.message()) == "--mode: 'auto' is not one of off, on");
  CHECK_FALSE(f.Parse({"--model"}).ok());
  CHECK_FALSE(f.Parse({"--ids", "1,x"}).ok());
  CHECK_FALSE(f.Parse({"--t", "nan"}).ok());
  CHECK_FALSE(f.Parse({"stray"}).ok());
  CHECK_FALSE(f.Parse({"--json=maybe"}).ok());
}

TEST_CASE("--help stops parsing and usage lists every flag, its choices and its default") {
  Parsed p;
  FlagSet f = MakeFlags(p);
  REQUIRE(f.Parse({"--help", "--bogus"}).ok());
  CHECK(f.help_requested());
  const std::string usage = f.Usage();
  for (const char* name : {"--model VALUE", "--n VALUE", "--t", "--json ", "--ids", "--temperature", "--help"}) {
    CHECK(usage.find(name) != std::string::npos);
  }
  CHECK(usage.find("--mode off|on") != std::string::npos);
  CHECK(usage.find("count (default: 5)") != std::string::npos);
}

}  // namespace
}  // namespace xlserve::cli
