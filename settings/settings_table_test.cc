#include "settings/settings_table.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>

namespace xlserve::settings {
namespace {

enum class Color { kRed, kGreen };
constexpr EnumName<Color> kColorNames[] = {{Color::kRed, "red"}, {Color::kGreen, "green"}};

struct Demo {
  int slots = 8;
  double timeout_s = 1.5;
  std::string name = "x";
  bool warm = true;
  Color color = Color::kRed;
  std::optional<double> rate;
  std::vector<std::string> hosts = {"a:1"};
};

const SettingsTable<Demo>& DemoTable() {
  static const SettingsTable<Demo> table = {
      {"slots", &Demo::slots, "slots", {1, 64}},
      {"timeout_s", &Demo::timeout_s, "seconds", {1e-3, 1e9}},
      {"name", &Demo::name, "a name"},
      {"warm", &Demo::warm, "warm up"},
      {"color", &Demo::color, kColorNames, "a color"},
      {"rate", &Demo::rate, "per second", {0, 100}},
      {"hosts", &Demo::hosts, "addresses"},
  };
  return table;
}

const Setting<Demo>& Find(std::string_view key) {
  for (const Setting<Demo>& s : DemoTable()) {
    if (s.key() == key) return s;
  }
  FAIL("no setting " << key);
  return DemoTable().front();
}

TEST_CASE("a table row knows its flag, its choices and its value as text") {
  Demo d;
  CHECK(Find("timeout_s").flag() == "timeout-s");
  CHECK(Find("color").choices() == std::vector<std::string_view>{"red", "green"});
  CHECK(Find("warm").is_switch());
  CHECK(Find("hosts").is_list());
  CHECK(Find("color").ValueText(d) == "red");
  CHECK(Find("rate").ValueText(d).empty());
  CHECK(Find("hosts").ValueText(d) == "a:1");
}

TEST_CASE("enum settings accept their names only, from text and from JSON") {
  Demo d;
  REQUIRE(Find("color").SetFromText("green", false, &d).ok());
  CHECK(d.color == Color::kGreen);
  const absl::Status bad = Find("color").SetFromText("blue", false, &d);
  CHECK(std::string(bad.message()) == "'blue' is not one of red, green");
  CHECK(ApplyJson(DemoTable(), nlohmann::json{{"color", "red"}}, &d).ok());
  CHECK(d.color == Color::kRed);
  CHECK_FALSE(ApplyJson(DemoTable(), nlohmann::json{{"color", 1}}, &d).ok());
}

TEST_CASE("a list's first occurrence replaces the default, later ones append") {
  Demo d;
  REQUIRE(Find("hosts").SetFromText("b:2,c:3", false, &d).ok());
  REQUIRE(Find("hosts").SetFromText("d:4", true, &d).ok());
  CHECK(d.hosts == std::vector<std::string>{"b:2", "c:3", "d:4"});
}

TEST_CASE("JSON errors name the key; range errors name the key and the flag") {
  Demo d;
  const absl::Status unknown = ApplyJson(DemoTable(), nlohmann::json{{"slot", 4}}, &d);
  CHECK(std::string(unknown.message()) == "unknown key \"slot\"");
  const absl::Status wrong = ApplyJson(DemoTable(), nlohmann::json{{"slots", "lots"}}, &d);
  CHECK(std::string(wrong.message()) == "key \"slots\": expected an integer, got \"lots\"");
  CHECK_FALSE(ApplyJson(DemoTable(), nlohmann::json::array(), &d).ok());

  CHECK(CheckRanges(DemoTable(), d).ok());
  d.slots = 0;
  CHECK(std::string(CheckRanges(DemoTable(), d).message()) == "slots (--slots) must be in [1, 64], got 0");
  d.slots = 8;
  d.rate = 101;
  CHECK(std::string(CheckRanges(DemoTable(), d).message()).find("rate (--rate)") == 0);
}

TEST_CASE("settings files: missing, not an object, or applied") {
  Demo d;
  CHECK(ApplyJsonFile(DemoTable(), "no/such/file.json", &d).code() == absl::StatusCode::kNotFound);
  const std::string path = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") +
                           "/settings_table_test.json";
  std::ofstream(path) << "[1]";
  CHECK(ApplyJsonFile(DemoTable(), path, &d).code() == absl::StatusCode::kInvalidArgument);
  std::ofstream(path) << R"({"slots": 4, "timeout_s": 2, "hosts": ["h:1", "h:2"]})";
  REQUIRE(ApplyJsonFile(DemoTable(), path, &d).ok());
  CHECK(d.slots == 4);
  CHECK(d.timeout_s == 2.0);
  CHECK(d.hosts == std::vector<std::string>{"h:1", "h:2"});
  std::ofstream(path) << R"({"slots": true})";
  const absl::Status bad = ApplyJsonFile(DemoTable(), path, &d);
  CHECK(std::string(bad.message()).find(path + ": key \"slots\"") == 0);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace xlserve::settings
