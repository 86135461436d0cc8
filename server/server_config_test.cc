#include "server/server_config.h"

#include <catch2/catch.hpp>

namespace xlserve::server {
namespace {

TEST_CASE("the shipped server config loads, validates and sets every key it names") {
  ServerConfig config;
  config.port = 1;
  REQUIRE(settings::ApplyJsonFile(ServerSettings(), "configs/server.json", &config).ok());
  CHECK(ValidateServerConfig(config).ok());
  CHECK(config.port == 50051);
  CHECK(config.host == "127.0.0.1");
}

TEST_CASE("choices are enums: parsed once from their names, a bad name is an error listing them") {
  ServerConfig config;
  REQUIRE(settings::ApplyJson(ServerSettings(),
                              nlohmann::json{{"device", "cpu"}, {"state_dtype", "bf16"}, {"speculation", "off"}},
                              &config)
              .ok());
  CHECK(config.device == Device::kCpu);
  CHECK(config.state_dtype == DType::kBF16);
  CHECK(config.speculation == SpeculationMode::kOff);
  const absl::Status bad = settings::ApplyJson(ServerSettings(), nlohmann::json{{"speculation", "sometimes"}}, &config);
  CHECK(std::string(bad.message()) == "key \"speculation\": 'sometimes' is not one of off, on, auto");
  CHECK_FALSE(settings::ApplyJson(ServerSettings(), nlohmann::json{{"state_dtype", "f16"}}, &config).ok());
  CHECK_FALSE(settings::ApplyJson(ServerSettings(), nlohmann::json{{"precision", "fp8"}}, &config).ok());
  REQUIRE(settings::ApplyJson(ServerSettings(), nlohmann::json{{"precision", "bf16"}}, &config).ok());
  CHECK(config.precision == PrecisionSetting::kBf16);
}

TEST_CASE("config JSON errors name the offending key") {
  ServerConfig config;
  absl::Status unknown = settings::ApplyJson(ServerSettings(), nlohmann::json{{"max_num_seq", 4}}, &config);
  CHECK(unknown.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(unknown.message()).find("max_num_seq") != std::string::npos);

  absl::Status wrong_type = settings::ApplyJson(ServerSettings(), nlohmann::json{{"max_queue", "lots"}}, &config);
  CHECK(wrong_type.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(wrong_type.message()).find("max_queue") != std::string::npos);

  CHECK(settings::ApplyJsonFile(ServerSettings(), "no/such/server.json", &config).code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("validation rejects settings that would leave a resource unbounded or unusable") {
  auto rejects = [](auto change, const std::string& name) {
    ServerConfig config;
    change(config);
    absl::Status st = ValidateServerConfig(config);
    INFO(name << ": " << st.ToString());
    CHECK(st.code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(st.message()).find(name) != std::string::npos);
  };
  rejects([](ServerConfig& c) { c.max_queue = 0; }, "max_queue");
  rejects([](ServerConfig& c) { c.max_num_seqs = -1; }, "max_num_seqs");
  rejects([](ServerConfig& c) { c.step_token_budget = 0; }, "step_token_budget");
  rejects([](ServerConfig& c) { c.default_max_tokens = c.max_tokens + 1; }, "default_max_tokens");
  rejects([](ServerConfig& c) { c.port = 70000; }, "port");
  rejects([](ServerConfig& c) { c.shutdown_grace_s = -1; }, "shutdown_grace_s");
  rejects([](ServerConfig& c) { c.tls_key_file = "key.pem"; }, "tls_cert");
  CHECK(ValidateServerConfig(ServerConfig{}).ok());
}

}  // namespace
}  // namespace xlserve::server
