// LtGemm: the bf16 weight GEMMs over split-pair activations through cuBLASLt, or through the
// weight-streaming StreamGemm (gemm_stream.cu) where that timed faster, with the algorithm
// chosen per shape by timing the candidates once.
//
// Why: for the skinny products of decode and verify (a few to a few hundred activation rows
// against 4096 x 4096 .. 21888 x 4096 weights) the default algorithm reached ~65% of the copy
// bandwidth on an H200; cuBLASLt's heuristic lists split-k and other tilings that stream the
// weights faster, and on sm_90 StreamGemm's tilings (up to kStreamGemmMaxCols rows) start
// their weight stream before the kernel ahead ends. Shapes with more rows (prefill) take the
// heuristic's first choice untimed. Where runner-ups time within the open gap of the fastest,
// or the fastest StreamGemm within a wider one (open_candidates.h), the choice stays open until
// warm-up's passes settle it (TakeCandidate); otherwise it is fixed per shape for the life of
// the object.
//
// The FFN's up projection may instead run with SwiGLU as StreamGemm's epilogue (RunSwiGlu), so
// that its fp32 product [rows, 2 ffn] never reaches memory, where that timed faster than the
// product plus the separate SwiGlu pass. That choice stays open like any other where the two
// timed within the open gap: timed alone, the pair does not pay the pass's extra launch. Its
// open choice comes before the product's, and the product's closes, unsettled by any pass,
// where the epilogue is taken: its plan never runs then.
//
// A timed shape may also run as k-slices: a strided batch of two GEMMs over the halves of k, or
// StreamGemm's blocks over up to four runs of k (the weights still read once), whose partial
// products the caller adds up. For outputs of few tiles (n = 4096 over 256 rows: 64 tiles of
// 128 x 128 on 132 SMs) that multiplies the tiles and divides each one's work.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/accelerator.h"
#include "kernels/launchers.h"

namespace xlserve::kernels {

// Timing's runner-ups within this fraction of its pick leave the choice open for a pass to
// decide. On an H100 one candidate's time alone moved by 13% between processes while its
// neighbour's held (docs/design.md, section 6), so that close a call is not timing's to make.
inline constexpr float kDefaultOpenGap = 0.05f;

class LtGemm {
 public:
  static absl::StatusOr<std::unique_ptr<LtGemm>> Create();
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // out [s, cols, n] fp32 (row-major; cuBLAS's n x cols column-major) = the products
  // x[:, slice s of k] · w[:, slice s of k]ᵀ for each of the returned number of k-slices (at
  // most MaxKSlices(cols)); x and w bf16 row-major, fp32 accumulation. Timing a new shape
  // synchronises `stream`.
  absl::StatusOr<int> Run(const void* w, int n, int k, const void* x, int cols, float* out, cudaStream_t stream);
  // y [cols, n] fp32 = x · wᵀ + bias (nullable, [n]) where the shape's plan runs as one k-slice
  // that adds the bias itself (StreamGemm's store, cuBLASLt's bias epilogue): returns 0 then and
  // leaves `out` alone, saving the caller's pass that would add up the plane. Otherwise as Run
  // into `out`. The bits are those of Run followed by CombineSplit, except where cuBLASLt takes
  // the epilogue only with another algorithm than an untimed plan's (Plan::biased_algo).
  absl::StatusOr<int> RunWhole(const void* w, int n, int k, const void* x, int cols, const float* bias, float* y,
                               float* out, cudaStream_t stream);
  // The FFN's up projection (n = 2 ffn rows interleaved as kSwiGluGroup says) followed by
  // SwiGLU: either StreamGemm with the SwiGLU epilogue, which writes the activation and leaves
  // `out` alone (returns 0), or Run into `out` (returns its k-slices) for the caller's SwiGlu
  // pass. The first where, timed with its epilogue, it beat Run plus that pass (timing as Run's;
  // within the open gap, warm-up's passes decide).
  absl::StatusOr<int> RunSwiGlu(const void* w, int n, int k, const void* x, int cols, float* out,
                                const SwiGluEpilogue& epilogue, cudaStream_t stream);
  // The most k-slices Run may return for `cols` columns (out must hold that many products):
  // StreamGemm's four only where it runs.
  int MaxKSlices(int cols) const;
  // Whether a new shape is timed (the default) or not: timing stalls the stream for tens of
  // milliseconds at the 7B shape, which a live step must not (the server times shapes during
  // warm-up only). An untimed shape takes the choice timed for the nearest larger column count
  // of the same weights when cuBLASLt accepts it there (warm-up times a ladder of row counts),
  // else the heuristic's first choice.
  void SetTuning(bool allowed) { frozen_ = !allowed; }
  // Every shape timed so far: the candidates' times as measured (a k-sliced one is then taken
  // only if kSliceGain faster, a narrow one's extra planes priced by their bytes) and the one
  // taken. One entry per timed shape, so bounded by the shapes warm-up visits.
  const std::vector<GemmChoice>& choices() const { return choices_; }
  // Choices that timing left open (Backend::OpenChoices): shapes whose runner-ups timed within
  // the open gap of the fastest, not yet settled.
  std::vector<OpenChoice> OpenChoices() const;
  // The fraction of the fastest candidate's time within which runner-ups leave a choice open.
  void SetOpenGap(float gap) { open_gap_ = gap; }
  // Runs candidate `candidate` of open choice `id` from the next call on; with `pass_seconds`
  // it settles the choice and adds them to its GemmChoice (Backend::TakeCandidate).
  absl::Status TakeCandidate(int id, int candidate, std::span<const double> pass_seconds);

 private:
  LtGemm() = default;
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    int k_slices = 1;
    StreamGemmConfig stream;  // width > 0: StreamGemm instead of cuBLASLt
    // The heuristic's first algorithm, untimed (not a timed or borrowed choice).
    bool heuristic = false;
    // desc with the bias epilogue and its algorithm, made on first use: algo where cuBLASLt
    // takes the epilogue with it, else for a heuristic plan the heuristic's first for the
    // epilogue; null where neither.
    cublasLtMatmulDesc_t biased = nullptr;
    cublasLtMatmulAlgo_t biased_algo{};
    bool biased_tried = false;
  };
  // A timed candidate: its time as counted (k-slices priced as said above) and what Plan it makes.
  struct Option {
    float counted_ms;
    int slices;
    cublasLtMatmulAlgo_t algo;
    StreamGemmConfig stream;  // width > 0: StreamGemm
  };
  struct Open {
    std::tuple<int, int, int> key;  // (n, k, cols)
    std::vector<Option> options;    // the close candidates, timing's pick first
    size_t record;                  // its entry of choices_
    bool settled = false;
    // RunSwiGlu's choice: options[i].stream is the epilogue's configuration, width 0 for the
    // product (the shape's plan) followed by the SwiGLU pass; labels[i] its name as timed.
    bool swiglu = false;
    std::vector<std::string> labels;
  };
  // The descriptor and layouts of `slices` k-slices of the shape into p.
  absl::Status Describe(int n, int k, int cols, int slices, Plan* p);
  // A plan for the shape with `donor`'s algorithm and slicing, if cuBLASLt accepts it there.
  bool Borrow(const Plan& donor, int n, int k, int cols, Plan* p);
  // The layouts of `slices` k-slices of the shape into p with the heuristic's first algorithm;
  // when `timed`, every algorithm of the heuristic's list timed, each added to `record` and
  // `options`.
  absl::Status Prepare(const void* w, int n, int k, const void* x, int cols, float* out, int slices, bool timed,
                       Plan* p, GemmChoice* record, std::vector<Option>* options, cudaStream_t stream);
  // The plan of a timed candidate for the shape.
  absl::Status Materialize(int n, int k, int cols, const Option& option, Plan* p);
  static void Destroy(Plan* p);
  // The plan's or the candidate's name in GemmChoice.
  static std::string Label(const Plan& p);
  static std::string Label(const Option& o);
  // The candidates of `options` (sorted by counted time; option(e) the Option of entry e) that
  // stay open (OpenCandidates), as indices.
  template <typename Entry, typename OptionOf>
  std::vector<size_t> OpenOf(const std::vector<Entry>& options, const OptionOf& option) const;
  // Closes the product's open choice of `key`: beside the SwiGLU epilogue it never runs.
  void SettleProductOf(const std::tuple<int, int, int>& key);
  // Times every StreamGemm configuration of the shape into `record` and `options`.
  absl::Status TryStream(const void* w, int n, int k, const void* x, int cols, float* out, GemmChoice* record,
                         std::vector<Option>* options, cudaStream_t stream);
  absl::StatusOr<Plan*> PlanFor(const void* w, int n, int k, const void* x, int cols, float* out,
                                cudaStream_t stream);
  // p's descriptor with the bias epilogue (Plan::biased), made on first use.
  cublasLtMatmulDesc_t BiasedDesc(Plan* p);
  // Whether cuBLASLt runs `algo` for desc over p's layouts within the workspace.
  bool Accepts(cublasLtMatmulDesc_t desc, const Plan& p, const cublasLtMatmulAlgo_t& algo) const;
  // Up to `max` of cuBLASLt's heuristic's algorithms for desc over p's layouts within the
  // workspace, best first, into results; how many (0 where it has none).
  int Heuristic(cublasLtMatmulDesc_t desc, const Plan& p, int max, cublasLtMatmulHeuristicResult_t* results) const;
  // Runs plan p (planned for the shape) on `stream`; with `bias` (one k-slice, and for cuBLASLt
  // a BiasedDesc) the output is the product plus the bias.
  absl::Status Launch(const Plan& p, const void* w, int n, int k, const void* x, int cols, const float* bias,
                      float* out, cudaStream_t stream);
  // RunSwiGlu's choice for the shape: the epilogue's configuration, width 0 for Run + SwiGlu.
  absl::StatusOr<StreamGemmConfig> SwiGluPlanFor(const void* w, int n, int k, const void* x, int cols, float* out,
                                                 const SwiGluEpilogue& epilogue, cudaStream_t stream);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<std::tuple<int, int, int>, Plan> plans_;  // (n, k, cols)
  std::set<std::tuple<int, int, int>> timed_;        // the plans chosen by timing
  std::map<std::tuple<int, int, int>, StreamGemmConfig> swiglu_;  // RunSwiGlu's choice per (n, k, cols)
  std::vector<GemmChoice> choices_;
  std::vector<Open> open_;  // one per entry of choices_ at most, so bounded as choices_
  bool frozen_ = false;
  float open_gap_ = kDefaultOpenGap;
  bool stream_gemm_ = false;  // StreamGemm runs on this device
  int sms_ = 0;
};

}  // namespace xlserve::kernels
