#include "gateway/upstream_pool.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <set>
#include <string_view>

#include <grpcpp/grpcpp.h>

#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace xlserve::gateway {
namespace {

// A failed replica is retried after this long; the scheduler on it may just have been busy.
constexpr std::chrono::seconds kDownTime{5};
constexpr size_t kMaxAffinities = 100000;
constexpr std::string_view kDnsScheme = "dns:///";
// Admission limit of a replica whose capacity is not known yet (never probed successfully).
constexpr int kUnknownCapacity = 64;
constexpr std::chrono::seconds kProbeTimeout{1};

// The addresses `host` has now, as gRPC targets IP:PORT ([IP]:PORT for IPv6), sorted; false
// when the lookup fails (the caller keeps what it had).
bool LookUp(const std::string& host, const std::string& port, std::vector<std::string>* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    spdlog::warn("upstream discovery: cannot resolve {}: {}", host, gai_strerror(rc));
    return false;
  }
  std::set<std::string> addresses;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char ip[INET6_ADDRSTRLEN] = {};
    if (a->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, ip, sizeof(ip));
      addresses.insert(std::string(ip) + ":" + port);
    } else if (a->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, ip, sizeof(ip));
      addresses.insert("[" + std::string(ip) + "]:" + port);
    }
  }
  freeaddrinfo(found);
  out->assign(addresses.begin(), addresses.end());
  return true;
}

}  // namespace

UpstreamPool::UpstreamPool(const std::vector<std::string>& addresses, const UpstreamOptions& options)
    : options_(options), credentials_(grpc::InsecureChannelCredentials()) {
  if (!options.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca_pem;
    credentials_ = grpc::SslCredentials(ssl);
  }
  // Nothing listens on this socket path: calls through it fail at once.
  departed_ = MakeReplica("unix:/nonexistent/xlserve-upstream-departed", "departed");
  for (const std::string& a : addresses) {
    if (a.rfind(kDnsScheme, 0) != 0) {
      fixed_.push_back(a);
      known_[a] = MakeReplica(a, a);
      continue;
    }
    const std::string name = a.substr(kDnsScheme.size());
    const size_t colon = name.rfind(':');
    Discovery d;
    d.host = name.substr(0, colon);
    d.port = colon == std::string::npos ? "50051" : name.substr(colon + 1);
    discovered_.push_back(std::move(d));
  }
  Resolve();
}

UpstreamPool::~UpstreamPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (background_.joinable()) background_.join();
}

std::unique_ptr<UpstreamPool::Replica> UpstreamPool::MakeReplica(const std::string& target,
                                                                 const std::string& address) const {
  auto r = std::make_unique<Replica>();
  r->address = address;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  r->channel = grpc::CreateCustomChannel(target, credentials_, args);
  r->stub = v1::XlServe::NewStub(r->channel);
  return r;
}

void UpstreamPool::StartProbing() {
  ProbeAll();
  background_ = std::thread([this] { BackgroundLoop(); });
}

void UpstreamPool::BackgroundLoop() {
  auto last_resolve = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, std::min(options_.probe_interval, options_.resolve_interval),
                            [this] { return stopping_; })) {
    lock.unlock();
    const auto now = std::chrono::steady_clock::now();
    if (!discovered_.empty() && now - last_resolve >= options_.resolve_interval) {
      Resolve();
      last_resolve = now;
    }
    ProbeAll();
    lock.lock();
  }
}

void UpstreamPool::Resolve() {
  // Lookups may block for seconds: run them without the lock. discovered_'s hosts and ports
  // never change after construction; only this thread (or the constructor) writes addresses.
  std::vector<std::vector<std::string>> results(discovered_.size());
  std::vector<bool> ok(discovered_.size());
  for (size_t i = 0; i < discovered_.size(); ++i) ok[i] = LookUp(discovered_[i].host, discovered_[i].port, &results[i]);
  std::lock_guard<std::mutex> lock(mu_);
  bool changed = rotation_.empty();
  for (size_t i = 0; i < discovered_.size(); ++i) {
    if (!ok[i] || results[i] == discovered_[i].addresses) continue;
    spdlog::info("upstream discovery: {} -> {} replica(s)", discovered_[i].host, results[i].size());
    discovered_[i].addresses = std::move(results[i]);
    changed = true;
  }
  if (changed) RebuildRotation();
}

UpstreamPool::Replica* UpstreamPool::ReplicaFor(const std::string& address) {
  std::unique_ptr<Replica>& r = known_[address];
  if (!r) r = MakeReplica(address, address);
  return r.get();
}

void UpstreamPool::RebuildRotation() {
  std::set<std::string> addresses(fixed_.begin(), fixed_.end());
  for (const Discovery& d : discovered_) addresses.insert(d.addresses.begin(), d.addresses.end());
  rotation_.clear();
  for (const std::string& a : addresses) rotation_.push_back(ReplicaFor(a));
  // Sessions pinned to a replica that left start over elsewhere.
  for (auto it = affinity_.begin(); it != affinity_.end();) {
    it = addresses.count(it->second->address) == 0 ? affinity_.erase(it) : std::next(it);
  }
}

std::unique_ptr<grpc::ClientContext> UpstreamPool::NewContext(std::chrono::system_clock::time_point deadline) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(deadline);
  if (!options_.api_key.empty()) context->AddMetadata("authorization", "Bearer " + options_.api_key);
  return context;
}

int UpstreamPool::Capacity(const Replica& r) const {
  if (options_.max_in_flight > 0) return options_.max_in_flight;
  return r.capacity > 0 ? r.capacity : kUnknownCapacity;
}

UpstreamPool::Lease UpstreamPool::Acquire(const std::string& affinity_key, int weight, Verdict* verdict) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  // An idle replica takes any request: one wider than its capacity is the replica's to refuse.
  auto has_room = [&](const Replica& r) { return r.in_flight == 0 || r.in_flight + weight <= Capacity(r); };
  int chosen = -1;
  bool any_usable = false;
  if (!affinity_key.empty()) {
    auto it = affinity_.find(affinity_key);
    if (it != affinity_.end() && Usable(*it->second, now)) {
      auto pos = std::find(rotation_.begin(), rotation_.end(), it->second);
      if (pos != rotation_.end()) {
        // The session's state lives there: wait for room rather than start over elsewhere.
        if (!has_room(**pos)) {
          *verdict = Verdict::kBusy;
          return {};
        }
        chosen = static_cast<int>(pos - rotation_.begin());
      }
    }
  }
  if (chosen < 0) {
    for (int i = 0; i < static_cast<int>(rotation_.size()); ++i) {
      const Replica& r = *rotation_[i];
      if (!Usable(r, now)) continue;
      any_usable = true;
      if (!has_room(r)) continue;
      if (chosen < 0 || r.in_flight < rotation_[chosen]->in_flight) chosen = i;
    }
    if (chosen < 0) {
      *verdict = any_usable ? Verdict::kBusy : Verdict::kUnavailable;
      return {};
    }
    if (!affinity_key.empty()) {
      if (affinity_.size() >= kMaxAffinities) affinity_.clear();
      affinity_[affinity_key] = rotation_[chosen];
    }
  }
  *verdict = Verdict::kOk;
  Replica* r = rotation_[chosen];
  r->in_flight += weight;
  return {chosen, r->stub.get(), weight, r};
}

void UpstreamPool::Release(const Lease& lease, bool failed) {
  if (lease.replica == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  Replica& r = *lease.replica;
  r.in_flight -= lease.weight;
  if (failed) {
    r.down_until = std::chrono::steady_clock::now() + kDownTime;
    for (auto it = affinity_.begin(); it != affinity_.end();) {
      it = it->second == lease.replica ? affinity_.erase(it) : std::next(it);
    }
  }
}

int UpstreamPool::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(rotation_.size());
}

int UpstreamPool::usable() const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  int n = 0;
  for (const Replica* r : rotation_) n += Usable(*r, now);
  return n;
}

int UpstreamPool::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [address, r] : known_) n += r->in_flight;
  return n;
}

v1::XlServe::Stub* UpstreamPool::stub(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  return i >= 0 && i < static_cast<int>(rotation_.size()) ? rotation_[i]->stub.get() : departed_->stub.get();
}

std::string UpstreamPool::address(int i) const {
  std::lock_guard<std::mutex> lock(mu_);
  return i >= 0 && i < static_cast<int>(rotation_.size()) ? rotation_[i]->address : departed_->address;
}

void UpstreamPool::ProbeAll() {
  std::vector<Replica*> replicas;
  {
    std::lock_guard<std::mutex> lock(mu_);
    replicas = rotation_;
  }
  for (Replica* replica : replicas) {
    // Channels and stubs are immutable after construction, and replicas never freed before
    // the pool: probe without the lock.
    grpc::health::v1::HealthCheckResponse health;
    std::unique_ptr<grpc::ClientContext> context = NewContext(std::chrono::system_clock::now() + kProbeTimeout);
    const grpc::Status st = grpc::health::v1::Health::NewStub(replica->channel)->Check(
        context.get(), grpc::health::v1::HealthCheckRequest(), &health);
    const bool serving = st.ok() && health.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    int capacity = 0;
    if (serving) {
      v1::ModelInfo info;
      context = NewContext(std::chrono::system_clock::now() + kProbeTimeout);
      if (replica->stub->GetModelInfo(context.get(), v1::GetModelInfoRequest(), &info).ok()) {
        capacity = info.max_num_seqs();
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (serving != replica->serving) {
      spdlog::info("upstream {} is {}", replica->address, serving ? "serving" : "not serving");
    }
    replica->serving = serving;
    if (capacity > 0) replica->capacity = capacity;
  }
}

}  // namespace xlserve::gateway
