// `xlserve health`: exit 0 when a server (gRPC health service) or gateway (/health) is up;
// what container health checks run.
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <regex>

#include "cli/commands.h"
#include "cli/flags.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"

namespace xlserve::cli {
namespace {

struct HealthSettings {
  std::string addr;
  std::string http;
  double timeout_s = 3;
};

const settings::SettingsTable<HealthSettings>& HealthSettingsTable() {
  static const settings::SettingsTable<HealthSettings> table = {
      {"addr", &HealthSettings::addr, "gRPC address of an xlserve server"},
      {"http", &HealthSettings::http, "URL of a gateway's /health"},
      {"timeout_s", &HealthSettings::timeout_s, "seconds to wait for an answer", {1e-3, 3600}},
  };
  return table;
}

}  // namespace

int RunHealth(const std::vector<std::string>& args) {
  HealthSettings f;
  FlagSet flags("xlserve health", "(--addr HOST:PORT | --http URL) [--timeout-s S]",
                "Checks a server through the standard grpc.health.v1 service (--addr) or a gateway\n"
                "through GET /health (--http http://HOST:PORT/health). Exit 0 when it is serving.");
  flags.Add(HealthSettingsTable(), &f);
  if (absl::Status st = flags.Parse(args); !st.ok()) return ReportError("health", std::string(st.message()));
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (absl::Status st = settings::CheckRanges(HealthSettingsTable(), f); !st.ok()) {
    return ReportError("health", std::string(st.message()));
  }
  const std::string& addr = f.addr;
  const std::string& http_url = f.http;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(f.timeout_s * 1000));
  if (addr.empty() == http_url.empty()) return ReportError("health", "give exactly one of --addr and --http");
  if (!addr.empty()) {
    auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status st = stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
    if (!st.ok()) return ReportError("health", addr + ": " + st.error_message());
    if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      return ReportError("health", addr + " is not serving");
    }
    std::printf("%s: SERVING\n", addr.c_str());
    return 0;
  }
  const std::regex url_re(R"(http://([^/:]+)(?::(\d+))?(/.*)?)");
  std::smatch m;
  if (!std::regex_match(http_url, m, url_re)) return ReportError("health", "--http must look like http://HOST:PORT/health");
  httplib::Client client(m[1].str(), m[2].matched ? std::stoi(m[2].str()) : 80);
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  auto res = client.Get(m[3].matched ? m[3].str() : "/health");
  if (!res) return ReportError("health", http_url + ": no answer");
  if (res->status != 200) return ReportError("health", http_url + ": HTTP " + std::to_string(res->status));
  std::printf("%s: ok\n", http_url.c_str());
  return 0;
}

}  // namespace xlserve::cli
