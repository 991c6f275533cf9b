// A plan for top-k selection over rows (contract: include/topkattn/topkattn.h): validated op, compiled kernels,
// workspace layout for the split path.
#pragma once
#include <algorithm>
#include <memory>
#include <string>

#include "codegen/render.h"
#include "codegen/select_spec.h"
#include "runtime/plan.h"
#include "runtime/runtime.h"
#include "runtime/select_coop.h"
#include "runtime/select_split.h"
#include "templates/common/one_read_rule.cuh"
#include "templates/select_params.cuh"

namespace tka {

struct SelectWorkspace {
  SplitWorkspace split;  // the split path's buffers
  CoopWorkspace coop;    // the cooperative path's
  size_t bytes = 0;
};

// Workspace of the split and cooperative paths for up to `rows` rows of up to row_len columns
// selecting k, from byte `at` on.
SelectWorkspace select_workspace(int rows, int row_len, int k, const SelectConfig& config, int sm_count, size_t at = 0);

// Dynamic shared memory of select_rows (templates/select.cuh): the ring that streams long rows
// where it fits beside the kernel's static part, and the sort buffer of sorted output (the same
// bytes). Rows read without the ring are slower, never wrong.
struct SelectSmem {
  int ring = 0;               // the ring's bytes (0: it does not fit)
  int sort = 0;               // the sort buffer's bytes
  bool sort_in_rows = false;  // false: the sort buffer does not fit there; select_sort sorts
  int capacity = 0;           // the config's candidate capacity (SelectConfig::capacity)
  // select_rows_cluster's dynamic shared memory: the ring, or more so that one CTA fills an SM's
  // shared memory past half (a cluster's CTAs wait for each other at its barriers, so two CTAs
  // sharing an SM make the whole cluster late); and the clusters of each size the device runs at
  // once with it (all 0 below sm_90).
  int cluster_bytes = 0;
  ClusterResidency resident_clusters{};
  CoopResidency coop;  // select_rows_coop's room for a chunk at one and two CTAs per SM
  // What a launch over rows of n columns selecting k needs: rows too short for the one-read path
  // never stream, and a ring they do not use would only cost occupancy.
  int bytes(int n, int k, bool sorted) const {
    const bool streams = sampled_select_pays(n, std::min(k, n), capacity);
    return std::max(streams ? ring : 0, sorted && sort_in_rows ? sort : 0);
  }
};

// Sizes the dynamic shared memory of a module's selection kernels (`fns` in codegen::SelectKernel
// order) and raises their limits to it. sort_size: the sort buffer in 8-byte words (0: unsorted).
Status prepare_select(const DeviceInfo& device, const CUfunction* fns, const SelectConfig& config, int elem_bytes,
                      int sort_size, SelectSmem* out);

// Launches a selection: `fns` are the kernels in codegen::SelectKernel order. `p` holds the
// rows; the split path's buffers come from `ws` inside `ws_base`.
Status launch_select(const DriverApi* api, const CUfunction* fns, SelectParams p, const SelectConfig& config,
                     const SelectSmem& smem, const SelectWorkspace& ws, char* ws_base, const DeviceInfo& device,
                     bool sorted, CUstream stream);

class SelectPlan : public Plan {
 public:
  static Status create(Runtime& runtime, const tka_select_desc& desc, std::unique_ptr<SelectPlan>* out,
                       const SelectConfig* config = nullptr);

  Status run(const tka_tensors& tensors, void* workspace, CUstream stream) const override;
  size_t workspace_bytes() const override { return ws_.bytes; }
  int max_k() const override { return op_.desc.top_k; }
  const std::string& spec_text() const override { return spec_text_; }
  const SelectConfig& config() const { return kspec_.config; }

 private:
  Status build(Runtime& runtime, const SelectConfig& config);

  SelectOp op_;
  SelectKernelSpec kspec_;
  std::string spec_text_;
  SelectWorkspace ws_;
  SelectSmem smem_;
  bool compile_only_ = false;
  DeviceInfo device_;
  std::shared_ptr<const LoadedModule> module_;
};

}  // namespace tka
