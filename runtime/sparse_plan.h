// A plan for sparse attention over given indices (contract: include/topkattn/topkattn.h).
#pragma once
#include <memory>
#include <string>

#include "codegen/render.h"
#include "codegen/sparse_spec.h"
#include "runtime/plan.h"
#include "runtime/runtime.h"
#include "templates/sparse_params.cuh"

namespace tka {

// How each row's index list is split over CTAs: enough CTAs to fill the GPU when rows are few,
// at least 64 indices per split so that merging stays cheap. `one_wave`: at most ctas_per_sm CTAs
// an SM (rounded down), for wide tiles of which only one or two fit an SM, where a partial second
// wave would double the time; else at least that many (rounded up).
struct SparseSplit {
  int splits = 1;
  int split_len = 32;
};
SparseSplit sparse_split(int ctas_per_split, int width, int sm_count, int ctas_per_sm = 4, bool one_wave = false);

class SparsePlan : public Plan {
 public:
  // config: the launch configuration (nullptr: the tuning database's, else the heuristic's).
  static Status create(Runtime& runtime, const tka_sparse_desc& desc, std::unique_ptr<SparsePlan>* out,
                       const SparseConfig* config = nullptr);

  Status run(const tka_tensors& tensors, void* workspace, CUstream stream) const override {
    return run(tensors, workspace, stream, 0);
  }
  // `max_len` > 0 caps the keys per sequence below what the cache holds (a fused caller's
  // workspace): longer sequences then give NaN, as for a length past the cache.
  Status run(const tka_tensors& tensors, void* workspace, CUstream stream, int max_len) const;
  // The two halves of run, for a fused caller that must check every tensor before it launches
  // anything: all checks and the launch parameters, then the launches.
  Status prepare(const tka_tensors& tensors, void* workspace, int max_len, SparseParams* params) const;
  Status launch(const SparseParams& params, CUstream stream) const;
  bool compile_only() const { return compile_only_; }
  size_t workspace_bytes() const override { return ws_bytes_; }
  int max_k() const override { return op_.desc.index_width; }
  const std::string& spec_text() const override { return spec_text_; }
  const SparseConfig& config() const { return config_; }

 private:
  int head_tiles() const;
  SparseSplit split_for(int ctas) const;  // the lists' split when `ctas` CTAs take whole lists
  SparseOp op_;
  SparseConfig config_;
  SparseKernelSpec kspec_;
  std::string spec_text_;
  size_t ws_bytes_ = 0;
  int max_splits_ = 1;
  int smem_bytes_ = 0;  // dynamic shared memory of sparse_attend
  bool compile_only_ = false;
  DeviceInfo device_;
  std::shared_ptr<const LoadedModule> module_;
};

}  // namespace tka
