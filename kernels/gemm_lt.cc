#include "kernels/gemm_lt.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "base/status_macros.h"
#include "kernels/cuda_check.h"
#include "kernels/open_candidates.h"

namespace xlserve::kernels {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;
// Activation columns up to which a new shape's candidates are timed (decode and verify).
constexpr int kTunedMaxCols = 512;
constexpr int kCandidates = 16;
constexpr int kTimedRuns = 3;
// Two k-slices are taken only when this much faster: their extra plane costs the reader a pass.
constexpr float kSliceGain = 0.9f;
// The narrow StreamGemm's planes are a few hundred KB (4 rows x 12304 fp32 at the 7B shape),
// where kSliceGain would charge a tenth of the product a plane: an extra plane is priced instead
// by its bytes, written once and read once at about 3 TB/s (bytes per ms).
constexpr float kPlaneBytesPerMs = 3e9f;
// The most candidates an open choice keeps (timing's pick and its closest runner-ups), and the
// wider gap within which the fastest StreamGemm stays open besides (open_candidates.h says why).
constexpr size_t kMaxOpenCandidates = 3;
constexpr float kStreamOpenGap = 0.15f;

// The time in ms of kTimedRuns calls of run() after one untimed call; infinity when one fails.
template <typename Run>
absl::StatusOr<float> TimeRuns(Run run, cudaStream_t stream) {
  if (!run()) return std::numeric_limits<float>::infinity();
  cudaEvent_t start, stop;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
  bool ok = true;
  for (int r = 0; r < kTimedRuns; ++r) ok = ok && run();
  CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ok ? ms : std::numeric_limits<float>::infinity();
}

// Names of the candidates in GemmChoice: every field of cuBLASLt's algorithm configuration that
// its heuristic varies.
std::string LtLabel(const cublasLtMatmulAlgo_t& algo, int slices) {
  const auto field = [&](cublasLtMatmulAlgoConfigAttributes_t attribute, auto value) {
    size_t written = 0;
    cublasLtMatmulAlgoConfigGetAttribute(&algo, attribute, &value, sizeof(value), &written);
    return std::to_string(value);
  };
  return "cublasLt algo " + field(CUBLASLT_ALGO_CONFIG_ID, int32_t{0}) + " tile " +
         field(CUBLASLT_ALGO_CONFIG_TILE_ID, uint32_t{0}) + " stages " +
         field(CUBLASLT_ALGO_CONFIG_STAGES_ID, uint32_t{0}) + " split-k " +
         field(CUBLASLT_ALGO_CONFIG_SPLITK_NUM, int32_t{0}) + " reduction " +
         field(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, uint32_t{0}) + " swizzle " +
         field(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, uint32_t{0}) + " custom " +
         field(CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, uint32_t{0}) + " inner " +
         field(CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, uint16_t{0}) + " cluster " +
         field(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, uint16_t{0}) + ", " + std::to_string(slices) + " k-slice(s)";
}
std::string StreamLabel(const StreamGemmConfig& c) {
  return std::string(c.narrow ? "narrow " : "") + "StreamGemm width " + std::to_string(c.width) + " stages " +
         std::to_string(c.stages) + ", " + std::to_string(c.slices) + " k-slice(s)";
}
std::string SwiGluLabel(const StreamGemmConfig& c) { return StreamLabel(c) + " with the SwiGLU epilogue"; }

// A descriptor of this class's products (fp32 compute and output, w transposed) with `epilogue`.
absl::Status CreateProductDesc(cublasLtEpilogue_t epilogue, cublasLtMatmulDesc_t* desc) {
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
  if (cublasLtMatmulDescSetAttribute(*desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans)) !=
          CUBLAS_STATUS_SUCCESS ||
      cublasLtMatmulDescSetAttribute(*desc, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans, sizeof(no_trans)) !=
          CUBLAS_STATUS_SUCCESS ||
      cublasLtMatmulDescSetAttribute(*desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)) !=
          CUBLAS_STATUS_SUCCESS) {
    cublasLtMatmulDescDestroy(*desc);
    *desc = nullptr;
    return absl::InternalError("cuBLASLt refused a product descriptor's attributes");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LtGemm>> LtGemm::Create() {
  std::unique_ptr<LtGemm> g(new LtGemm());
  CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&g->handle_));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&g->workspace_, kWorkspaceBytes));
  g->stream_gemm_ = StreamGemmAvailable();
  int device = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&g->sms_, cudaDevAttrMultiProcessorCount, device));
  return g;
}

LtGemm::~LtGemm() {
  for (auto& [key, p] : plans_) Destroy(&p);
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

void LtGemm::Destroy(Plan* p) {
  if (p->a) cublasLtMatrixLayoutDestroy(p->a);
  if (p->b) cublasLtMatrixLayoutDestroy(p->b);
  if (p->c) cublasLtMatrixLayoutDestroy(p->c);
  if (p->desc) cublasLtMatmulDescDestroy(p->desc);
  if (p->biased) cublasLtMatmulDescDestroy(p->biased);
  *p = Plan{};
}

absl::Status LtGemm::Describe(int n, int k, int cols, int slices, Plan* p) {
  p->k_slices = slices;
  const int ks = k / slices;
  // Column-major view: D [n, cols] = op(A) B with A = w as k x n (transposed), B = x as k x cols;
  // slice s starts s * ks into each row of w and x, and s * n * cols into out.
  RETURN_IF_ERROR(CreateProductDesc(CUBLASLT_EPILOGUE_DEFAULT, &p->desc));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, ks, n, k));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, ks, cols, k));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, n, cols, n));
  if (slices > 1) {
    const int32_t batch = slices;
    const int64_t ab_stride = ks, c_stride = int64_t(n) * cols;
    for (cublasLtMatrixLayout_t l : {p->a, p->b, p->c}) {
      CUBLAS_RETURN_IF_ERROR(
          cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)));
    }
    CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(p->a, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                            &ab_stride, sizeof(ab_stride)));
    CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(p->b, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                            &ab_stride, sizeof(ab_stride)));
    CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(p->c, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                            &c_stride, sizeof(c_stride)));
  }
  return absl::OkStatus();
}

bool LtGemm::Borrow(const Plan& donor, int n, int k, int cols, Plan* p) {
  if (donor.stream.width > 0) {
    if (!StreamGemmRuns(donor.stream, n, k, cols)) return false;
    p->stream = donor.stream;
    p->k_slices = donor.k_slices;
    return true;
  }
  if (!Describe(n, k, cols, donor.k_slices, p).ok() || !Accepts(p->desc, *p, donor.algo)) return false;
  p->algo = donor.algo;
  return true;
}

bool LtGemm::Accepts(cublasLtMatmulDesc_t desc, const Plan& p, const cublasLtMatmulAlgo_t& algo) const {
  cublasLtMatmulHeuristicResult_t check{};
  return cublasLtMatmulAlgoCheck(handle_, desc, p.a, p.b, p.c, p.c, &algo, &check) == CUBLAS_STATUS_SUCCESS &&
         check.workspaceSize <= kWorkspaceBytes;
}

int LtGemm::Heuristic(cublasLtMatmulDesc_t desc, const Plan& p, int max,
                      cublasLtMatmulHeuristicResult_t* results) const {
  cublasLtMatmulPreference_t pref = nullptr;
  if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return 0;
  const size_t ws = kWorkspaceBytes;
  int found = 0;
  if (cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)) !=
          CUBLAS_STATUS_SUCCESS ||
      cublasLtMatmulAlgoGetHeuristic(handle_, desc, p.a, p.b, p.c, p.c, pref, max, results, &found) !=
          CUBLAS_STATUS_SUCCESS) {
    found = 0;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  return found;
}

std::string LtGemm::Label(const Plan& p) {
  return p.stream.width > 0 ? StreamLabel(p.stream) : LtLabel(p.algo, p.k_slices);
}
std::string LtGemm::Label(const Option& o) {
  return o.stream.width > 0 ? StreamLabel(o.stream) : LtLabel(o.algo, o.slices);
}
void LtGemm::SettleProductOf(const std::tuple<int, int, int>& key) {
  for (Open& o : open_) o.settled = o.settled || (o.key == key && !o.swiglu);
}

absl::Status LtGemm::Prepare(const void* w, int n, int k, const void* x, int cols, float* out, int slices,
                             bool timed, Plan* p, GemmChoice* record, std::vector<Option>* options,
                             cudaStream_t stream) {
  RETURN_IF_ERROR(Describe(n, k, cols, slices, p));
  std::vector<cublasLtMatmulHeuristicResult_t> results(kCandidates);
  const int found = Heuristic(p->desc, *p, kCandidates, results.data());
  if (found == 0) {
    return absl::InternalError("cuBLASLt has no algorithm for a " + std::to_string(n) + " x " + std::to_string(k) +
                               " bf16 GEMM over " + std::to_string(cols) + " columns in " + std::to_string(slices) +
                               " k-slice(s)");
  }
  p->algo = results[0].algo;
  if (!timed) return absl::OkStatus();
  const float alpha = 1.0f, beta = 0.0f;
  for (int i = 0; i < found; ++i) {
    // A candidate that cannot run here times as infinity and is skipped.
    ASSIGN_OR_RETURN(const float ms, TimeRuns(
                                         [&] {
                                           return cublasLtMatmul(handle_, p->desc, &alpha, w, p->a, x, p->b, &beta,
                                                                 out, p->c, out, p->c, &results[i].algo, workspace_,
                                                                 kWorkspaceBytes, stream) == CUBLAS_STATUS_SUCCESS;
                                         },
                                         stream));
    if (!std::isfinite(ms)) continue;
    record->candidates_ms.emplace_back(LtLabel(results[i].algo, slices), ms);
    // A k-sliced product is counted kSliceGain slower: its extra plane costs the reader a pass.
    options->push_back({ms / std::pow(kSliceGain, float(slices - 1)), slices, results[i].algo, {}});
  }
  return absl::OkStatus();
}

absl::Status LtGemm::TryStream(const void* w, int n, int k, const void* x, int cols, float* out, GemmChoice* record,
                               std::vector<Option>* options, cudaStream_t stream) {
  for (const StreamGemmConfig& c : StreamGemmCandidates(n, k, cols, sms_)) {
    ASSIGN_OR_RETURN(const float ms,
                     TimeRuns([&] { return StreamGemm(c, w, n, k, x, cols, nullptr, out, stream) == cudaSuccess; },
                              stream));
    cudaGetLastError();  // a configuration that cannot launch here is skipped
    if (!std::isfinite(ms)) continue;
    record->candidates_ms.emplace_back(StreamLabel(c), ms);
    // ms covers kTimedRuns calls.
    const float counted =
        c.narrow ? ms + float(kTimedRuns * (c.slices - 1)) * 2 * sizeof(float) * cols * n / kPlaneBytesPerMs
                 : ms / std::pow(kSliceGain, float(c.slices - 1));
    options->push_back({counted, c.slices, {}, c});
  }
  return absl::OkStatus();
}

absl::Status LtGemm::Materialize(int n, int k, int cols, const Option& option, Plan* p) {
  if (option.stream.width > 0) {
    p->stream = option.stream;
    p->k_slices = option.stream.slices;
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(Describe(n, k, cols, option.slices, p));
  p->algo = option.algo;
  return absl::OkStatus();
}

// Only timed shapes can be sliced: the choice is made by timing both.
int LtGemm::MaxKSlices(int cols) const {
  if (stream_gemm_ && cols <= kStreamGemmMaxCols) return kStreamGemmMaxSlices;
  return cols <= kTunedMaxCols ? 2 : 1;
}

template <typename Entry, typename OptionOf>
std::vector<size_t> LtGemm::OpenOf(const std::vector<Entry>& options, const OptionOf& option) const {
  std::vector<float> ms;
  std::vector<bool> stream;
  for (const Entry& e : options) {
    ms.push_back(option(e).counted_ms);
    stream.push_back(option(e).stream.width > 0);
  }
  return OpenCandidates(ms, stream, open_gap_, std::max(open_gap_, kStreamOpenGap), kMaxOpenCandidates);
}

absl::StatusOr<LtGemm::Plan*> LtGemm::PlanFor(const void* w, int n, int k, const void* x, int cols, float* out,
                                              cudaStream_t stream) {
  const auto key = std::make_tuple(n, k, cols);
  auto it = plans_.find(key);
  if (it != plans_.end()) return &it->second;
  if (frozen_) {
    auto donor = timed_.lower_bound(key);
    if (donor != timed_.end() && std::get<0>(*donor) == n && std::get<1>(*donor) == k) {
      Plan borrowed;
      if (Borrow(plans_.at(*donor), n, k, cols, &borrowed)) return &plans_.emplace(key, borrowed).first->second;
      Destroy(&borrowed);
    }
  }
  const bool timed = !frozen_ && cols <= kTunedMaxCols;
  GemmChoice record{n, k, cols};
  std::vector<Option> options;
  Plan plan;
  absl::Status prepared = Prepare(w, n, k, x, cols, out, 1, timed, &plan, &record, &options, stream);
  // Two k-slices need 16-byte aligned slice starts (k % 16 == 0 for bf16 rows).
  if (prepared.ok() && timed && MaxKSlices(cols) >= 2 && k % 16 == 0) {
    Plan sliced;
    // A sliced shape cuBLASLt has no algorithm for is simply not a candidate.
    (void)Prepare(w, n, k, x, cols, out, 2, /*timed=*/true, &sliced, &record, &options, stream);
    Destroy(&sliced);
  }
  if (prepared.ok() && timed && stream_gemm_) prepared = TryStream(w, n, k, x, cols, out, &record, &options, stream);
  if (!prepared.ok()) {
    Destroy(&plan);
    return prepared;
  }
  if (timed && !options.empty()) {
    std::stable_sort(options.begin(), options.end(),
                     [](const Option& a, const Option& b) { return a.counted_ms < b.counted_ms; });
    Destroy(&plan);
    RETURN_IF_ERROR(Materialize(n, k, cols, options.front(), &plan));
  }
  plan.heuristic = !timed;
  if (timed) {
    timed_.insert(key);
    record.chosen = Label(plan);
    // Candidates within the open gap of the fastest: timing each alone cannot tell them apart
    // reliably, so warm-up's passes decide (TakeCandidate).
    const std::vector<size_t> open = OpenOf(options, [](const Option& o) -> const Option& { return o; });
    if (open.size() > 1) {
      std::vector<Option> kept;
      for (size_t i : open) kept.push_back(options[i]);
      open_.push_back({key, std::move(kept), choices_.size()});
    }
    choices_.push_back(std::move(record));
  }
  return &plans_.emplace(key, plan).first->second;
}

std::vector<OpenChoice> LtGemm::OpenChoices() const {
  // The SwiGLU epilogue's choices first: where a pass takes the epilogue, the product's choice of
  // that shape closes unsettled (its plan never runs).
  std::vector<OpenChoice> open;
  for (const bool swiglu : {true, false}) {
    for (size_t i = 0; i < open_.size(); ++i) {
      if (!open_[i].settled && open_[i].swiglu == swiglu) {
        open.push_back({static_cast<int>(i), static_cast<int>(open_[i].options.size())});
      }
    }
  }
  return open;
}

absl::Status LtGemm::TakeCandidate(int id, int candidate, std::span<const double> pass_seconds) {
  if (id < 0 || id >= static_cast<int>(open_.size()) || open_[id].settled || candidate < 0 ||
      candidate >= static_cast<int>(open_[id].options.size())) {
    return absl::InvalidArgumentError("no open GEMM choice " + std::to_string(id) + " with candidate " +
                                      std::to_string(candidate));
  }
  Open& o = open_[id];
  if (o.swiglu) {
    swiglu_[o.key] = o.options[candidate].stream;
  } else {
    const auto [n, k, cols] = o.key;
    Plan taken;
    if (absl::Status st = Materialize(n, k, cols, o.options[candidate], &taken); !st.ok()) {
      Destroy(&taken);
      return st;
    }
    Plan& current = plans_.at(o.key);
    Destroy(&current);
    current = taken;
  }
  if (pass_seconds.empty()) return absl::OkStatus();
  o.settled = true;
  if (o.swiglu && o.options[candidate].stream.width > 0) SettleProductOf(o.key);
  const auto label = [&](size_t i) { return o.swiglu ? o.labels[i] : Label(o.options[i]); };
  GemmChoice& record = choices_[o.record];
  record.chosen = label(candidate);
  for (size_t i = 0; i < o.options.size() && i < pass_seconds.size(); ++i) {
    record.pass_ms.emplace_back(label(i), 1e3 * pass_seconds[i]);
  }
  return absl::OkStatus();
}

absl::StatusOr<StreamGemmConfig> LtGemm::SwiGluPlanFor(const void* w, int n, int k, const void* x, int cols,
                                                       float* out, const SwiGluEpilogue& epilogue,
                                                       cudaStream_t stream) {
  const auto key = std::make_tuple(n, k, cols);
  auto it = swiglu_.find(key);
  if (it != swiglu_.end()) return it->second;
  StreamGemmConfig chosen;
  const bool timed = !frozen_ && cols <= kTunedMaxCols && stream_gemm_;
  if (!timed) {
    // As Run borrows: the choice for the nearest larger column count, where it applies.
    auto donor = swiglu_.lower_bound(key);
    if (donor != swiglu_.end() && std::get<0>(donor->first) == n && std::get<1>(donor->first) == k &&
        StreamGemmSwiGluSupports(donor->second, n, k, cols)) {
      chosen = donor->second;
    }
    swiglu_.emplace(key, chosen);
    return chosen;
  }
  ASSIGN_OR_RETURN(const Plan* plan, PlanFor(w, n, k, x, cols, out, stream));
  GemmChoice record{n, k, cols, /*swiglu=*/true};
  // Each option: the epilogue's configuration (width 0: the product, then the SwiGLU pass).
  std::vector<std::pair<Option, std::string>> options;
  const std::string unfused = "the product (" + Label(*plan) + ") + the SwiGLU pass";
  ASSIGN_OR_RETURN(const float unfused_ms, TimeRuns(
                                               [&] {
                                                 return Launch(*plan, w, n, k, x, cols, nullptr, out, stream).ok() &&
                                                        SwiGlu(GemmPlanes{out, plan->k_slices}, epilogue.bias, true,
                                                               cols, n / 2, epilogue.out, epilogue.bf16,
                                                               stream) == cudaSuccess;
                                               },
                                               stream));
  if (std::isfinite(unfused_ms)) {
    record.candidates_ms.emplace_back(unfused, unfused_ms);
    options.push_back({Option{unfused_ms, 1, {}, {}}, unfused});
  }
  for (const StreamGemmConfig& c : StreamGemmCandidates(n, k, cols, sms_)) {
    if (!StreamGemmSwiGluSupports(c, n, k, cols)) continue;
    ASSIGN_OR_RETURN(const float ms, TimeRuns(
                                         [&] {
                                           return StreamGemmSwiGlu(c, w, n, k, x, cols, epilogue, stream) ==
                                                  cudaSuccess;
                                         },
                                         stream));
    cudaGetLastError();  // a configuration that cannot launch here is skipped
    if (!std::isfinite(ms)) continue;
    record.candidates_ms.emplace_back(SwiGluLabel(c), ms);
    options.push_back({Option{ms, c.slices, {}, c}, SwiGluLabel(c)});
  }
  // Ties go to the product and its pass, as timed first.
  std::stable_sort(options.begin(), options.end(),
                   [](const auto& a, const auto& b) { return a.first.counted_ms < b.first.counted_ms; });
  if (!options.empty()) chosen = options.front().first.stream;
  record.chosen = options.empty() ? unfused : options.front().second;
  const std::vector<size_t> open = OpenOf(options, [](const auto& o) -> const Option& { return o.first; });
  if (open.size() > 1) {
    Open o{key, {}, choices_.size()};
    o.swiglu = true;
    for (size_t i : open) {
      o.options.push_back(options[i].first);
      o.labels.push_back(options[i].second);
    }
    open_.push_back(std::move(o));
  } else if (chosen.width > 0) {
    SettleProductOf(key);
  }
  choices_.push_back(std::move(record));
  swiglu_.emplace(key, chosen);
  return chosen;
}

absl::StatusOr<int> LtGemm::RunSwiGlu(const void* w, int n, int k, const void* x, int cols, float* out,
                                      const SwiGluEpilogue& epilogue, cudaStream_t stream) {
  ASSIGN_OR_RETURN(const StreamGemmConfig c, SwiGluPlanFor(w, n, k, x, cols, out, epilogue, stream));
  if (c.width == 0) return Run(w, n, k, x, cols, out, stream);
  CUDA_RETURN_IF_ERROR(StreamGemmSwiGlu(c, w, n, k, x, cols, epilogue, stream));
  return 0;
}

absl::Status LtGemm::Launch(const Plan& p, const void* w, int n, int k, const void* x, int cols, const float* bias,
                            float* out, cudaStream_t stream) {
  if (p.stream.width > 0) {
    CUDA_RETURN_IF_ERROR(StreamGemm(p.stream, w, n, k, x, cols, bias, out, stream));
    return absl::OkStatus();
  }
  cublasLtMatmulDesc_t desc = p.desc;
  const cublasLtMatmulAlgo_t* algo = &p.algo;
  if (bias != nullptr) {
    desc = p.biased;
    algo = &p.biased_algo;
    CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, desc, &alpha, w, p.a, x, p.b, &beta, out, p.c, out, p.c, algo,
                                        workspace_, kWorkspaceBytes, stream));
  return absl::OkStatus();
}

absl::StatusOr<int> LtGemm::Run(const void* w, int n, int k, const void* x, int cols, float* out,
                                cudaStream_t stream) {
  ASSIGN_OR_RETURN(const Plan* plan, PlanFor(w, n, k, x, cols, out, stream));
  RETURN_IF_ERROR(Launch(*plan, w, n, k, x, cols, nullptr, out, stream));
  return plan->k_slices;
}

cublasLtMatmulDesc_t LtGemm::BiasedDesc(Plan* p) {
  if (p->biased_tried) return p->biased;
  p->biased_tried = true;
  cublasLtMatmulDesc_t desc = nullptr;
  if (!CreateProductDesc(CUBLASLT_EPILOGUE_BIAS, &desc).ok()) return nullptr;  // the bias's type: D's, fp32
  bool ok = Accepts(desc, *p, p->algo);
  if (ok) {
    p->biased_algo = p->algo;
  } else if (p->heuristic) {
    // Timing never chose this plan's algorithm, so the heuristic may as well choose for the
    // epilogue (the 7B q|k|v|o|gates product over 2,048 rows on an H100 needs this).
    cublasLtMatmulHeuristicResult_t first{};
    ok = Heuristic(desc, *p, 1, &first) > 0;
    if (ok) p->biased_algo = first.algo;
  }
  if (!ok) cublasLtMatmulDescDestroy(desc);
  p->biased = ok ? desc : nullptr;
  return p->biased;
}

absl::StatusOr<int> LtGemm::RunWhole(const void* w, int n, int k, const void* x, int cols, const float* bias,
                                     float* y, float* out, cudaStream_t stream) {
  ASSIGN_OR_RETURN(Plan* plan, PlanFor(w, n, k, x, cols, out, stream));
  const bool whole =
      plan->k_slices == 1 && (bias == nullptr || plan->stream.width > 0 || BiasedDesc(plan) != nullptr);
  RETURN_IF_ERROR(Launch(*plan, w, n, k, x, cols, whole ? bias : nullptr, whole ? y : out, stream));
  return whole ? 0 : plan->k_slices;
}

}  // namespace xlserve::kernels
