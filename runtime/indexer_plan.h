// Plans for the Lightning Indexer (contract: include/topkattn/topkattn.h): its scores alone, or fused with the top-k
// selection and sparse attention over the selected tokens (one plan, one workspace).
#pragma once
#include <memory>
#include <string>

#include "codegen/indexer_spec.h"
#include "codegen/render.h"
#include "runtime/plan.h"
#include "runtime/runtime.h"
#include "runtime/select_plan.h"
#include "runtime/sparse_plan.h"

namespace tka {

struct IndexerWorkspace {
  size_t scores = 0, row_len = 0, selected = 0, sparse = 0, bytes = 0;  // byte offsets
  long long score_len = 0;  // fp32 per score row (the longest sequence the plan takes, rounded)
  SelectWorkspace select;
};

class IndexerPlan : public Plan {
 public:
  // `config`: the scores kernel's configuration (the tuner's candidates); nullptr: the tuning
  // database's, else the heuristic default.
  static Status create(Runtime& runtime, const tka_indexer_desc& desc, bool fused, std::unique_ptr<IndexerPlan>* out,
                       const IndexerConfig* config = nullptr);
  const IndexerConfig& config() const { return config_; }

  Status run(const tka_tensors& tensors, void* workspace, CUstream stream) const override;
  size_t workspace_bytes() const override { return ws_.bytes; }
  int max_k() const override { return op_.fused ? op_.desc.top_k : 0; }
  const std::string& spec_text() const override { return spec_text_; }

 private:
  struct IndexerTensors;
  Status check_indexer_tensors(const tka_tensors& t, IndexerTensors* out) const;
  Status build_scores(Runtime& runtime, const IndexerConfig& config);
  Status launch_scores(const IndexerTensors& x, float* scores, long long score_stride0, long long score_stride1,
                       int score_len, int* row_len, int limit, CUstream stream) const;

  IndexerOp op_;
  IndexerKernelSpec kspec_;
  IndexerConfig config_;
  std::string spec_text_;
  IndexerWorkspace ws_;
  bool compile_only_ = false;
  DeviceInfo device_;
  std::shared_ptr<const LoadedModule> module_;
  int smem_bytes_ = 0;                     // dynamic shared memory of indexer_scores
  int resident_per_sm_ = 0;                // indexer_scores CTAs that fit on an SM at once (0: compile-only)
  bool key_map_ = false;                   // TKA_INDEXER_TMA, wgmma path, contiguous keys: a tensor map per run
  SelectSmem select_smem_;                 // and of its selection kernels
  std::unique_ptr<SparsePlan> attention_;  // fused only
};

}  // namespace tka
