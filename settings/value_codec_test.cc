#include "settings/value_codec.h"

#include <catch2/catch.hpp>

#include "absl/status/statusor.h"

namespace xlserve::settings {
namespace {

template <typename T>
absl::StatusOr<T> Text(std::string_view text) {
  T value{};
  absl::Status st = ValueCodec<T>::FromText(text, &value);
  if (!st.ok()) return st;
  return value;
}

template <typename T>
absl::StatusOr<T> Json(const nlohmann::json& j) {
  T value{};
  absl::Status st = ValueCodec<T>::FromJson(j, &value);
  if (!st.ok()) return st;
  return value;
}

TEST_CASE("numbers from text: whole, finite and in range of the type") {
  CHECK(*Text<int>(" 42 ") == 42);
  CHECK(*Text<double>("1.25") == 1.25);
  CHECK(*Text<uint64_t>("18446744073709551615") == UINT64_MAX);
  CHECK_FALSE(Text<int>("4x").ok());
  CHECK_FALSE(Text<int>("").ok());
  CHECK_FALSE(Text<int>("1.5").ok());
  CHECK_FALSE(Text<int>("4294967297").ok());
  CHECK_FALSE(Text<uint64_t>("-1").ok());
  CHECK_FALSE(Text<double>("nan").ok());
  CHECK_FALSE(Text<double>("inf").ok());
  CHECK(std::string(Text<int>("abc").status().message()) == "'abc' is not an integer");
}

TEST_CASE("switches, optionals and lists from text") {
  CHECK(*Text<bool>("") == true);
  CHECK(*Text<bool>("false") == false);
  CHECK_FALSE(Text<bool>("maybe").ok());
  CHECK(**Text<std::optional<double>>("0.5") == 0.5);
  CHECK(*Text<std::vector<int>>("1, 2,3") == std::vector<int>{1, 2, 3});
  CHECK(*Text<std::vector<std::string>>("a:1,b:2") == std::vector<std::string>{"a:1", "b:2"});
  CHECK_FALSE(Text<std::vector<int>>("1,,2").ok());
  CHECK_FALSE(Text<std::vector<int>>("").ok());
  CHECK(std::string(Text<std::vector<int>>("1,x").status().message()).find("item 2") != std::string::npos);
}

TEST_CASE("values from JSON keep their types") {
  CHECK(*Json<int>(7) == 7);
  CHECK_FALSE(Json<int>(4294967297LL).ok());
  CHECK_FALSE(Json<int>("7").ok());
  CHECK_FALSE(Json<int>(7.5).ok());
  CHECK(*Json<double>(7) == 7.0);
  CHECK_FALSE(Json<bool>(1).ok());
  CHECK(*Json<std::string>("x") == "x");
  CHECK_FALSE(Json<uint64_t>(-1).ok());
  CHECK_FALSE(Json<std::optional<int>>(nullptr)->has_value());
  CHECK(*Json<std::vector<double>>(nlohmann::json::array({1, 2.5})) == std::vector<double>{1, 2.5});
  CHECK_FALSE(Json<std::vector<int>>(3).ok());
}

TEST_CASE("values back to text") {
  CHECK(ValueCodec<double>::ToText(0.1) == "0.1");
  CHECK(ValueCodec<double>::ToText(1 << 30) == "1073741824");
  CHECK(ValueCodec<std::vector<int>>::ToText({1, 8, 32}) == "1,8,32");
  CHECK(ValueCodec<std::optional<int>>::ToText(std::nullopt).empty());
}

}  // namespace
}  // namespace xlserve::settings
