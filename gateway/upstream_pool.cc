#include "gateway/upstream_pool.h"

#include <grpcpp/grpcpp.h>

#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace xlserve::gateway {
namespace {

// A failed replica is retried after this long; the scheduler on it may just have been busy.
constexpr std::chrono::seconds kDownTime{5};
constexpr size_t kMaxAffinities = 100000;
// Admission limit of a replica whose capacity is not known yet (never probed successfully).
constexpr int kUnknownCapacity = 64;
constexpr std::chrono::seconds kProbeTimeout{1};

}  // namespace

UpstreamPool::UpstreamPool(const std::vector<std::string>& addresses, const UpstreamOptions& options)
    : options_(options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca_pem;
    credentials = grpc::SslCredentials(ssl);
  }
  for (const std::string& a : addresses) {
    auto r = std::make_unique<Replica>();
    r->address = a;
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    r->channel = grpc::CreateCustomChannel(a, credentials, args);
    r->stub = v1::XlServe::NewStub(r->channel);
    replicas_.push_back(std::move(r));
  }
}

UpstreamPool::~UpstreamPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (prober_.joinable()) prober_.join();
}

void UpstreamPool::StartProbing() {
  ProbeAll();
  prober_ = std::thread([this] { ProbeLoop(); });
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
    if (it != affinity_.end() && Usable(*replicas_[it->second], now)) {
      // The session's state lives there: wait for room rather than start over elsewhere.
      if (!has_room(*replicas_[it->second])) {
        *verdict = Verdict::kBusy;
        return {};
      }
      chosen = it->second;
    }
  }
  if (chosen < 0) {
    for (int i = 0; i < static_cast<int>(replicas_.size()); ++i) {
      const Replica& r = *replicas_[i];
      if (!Usable(r, now)) continue;
      any_usable = true;
      if (!has_room(r)) continue;
      if (chosen < 0 || r.in_flight < replicas_[chosen]->in_flight) chosen = i;
    }
    if (chosen < 0) {
      *verdict = any_usable ? Verdict::kBusy : Verdict::kUnavailable;
      return {};
    }
    if (!affinity_key.empty()) {
      if (affinity_.size() >= kMaxAffinities) affinity_.clear();
      affinity_[affinity_key] = chosen;
    }
  }
  *verdict = Verdict::kOk;
  replicas_[chosen]->in_flight += weight;
  return {chosen, replicas_[chosen]->stub.get(), weight};
}

void UpstreamPool::Release(const Lease& lease, bool failed) {
  if (lease.index < 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  Replica& r = *replicas_[lease.index];
  r.in_flight -= lease.weight;
  if (failed) {
    r.down_until = std::chrono::steady_clock::now() + kDownTime;
    for (auto it = affinity_.begin(); it != affinity_.end();) {
      it = it->second == lease.index ? affinity_.erase(it) : std::next(it);
    }
  }
}

int UpstreamPool::usable() const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  int n = 0;
  for (const auto& r : replicas_) n += Usable(*r, now);
  return n;
}

int UpstreamPool::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& r : replicas_) n += r->in_flight;
  return n;
}

void UpstreamPool::ProbeAll() {
  for (auto& replica : replicas_) {
    // Channels and stubs are immutable after construction: probe without the lock.
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

void UpstreamPool::ProbeLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, options_.probe_interval, [this] { return stopping_; })) {
    lock.unlock();
    ProbeAll();
    lock.lock();
  }
}

}  // namespace xlserve::gateway
