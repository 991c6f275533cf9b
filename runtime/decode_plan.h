// A plan for exact top-k decode: validated op, compiled kernels, workspace layout. Immutable after
// creation, so any number of threads may run it at once.
#pragma once
#include <memory>
#include <string>

#include "codegen/decode_spec.h"
#include "codegen/render.h"
#include "runtime/plan.h"
#include "runtime/runtime.h"
#include "runtime/select_coop.h"
#include "runtime/select_split.h"

namespace tka {

struct DecodeWorkspace {
  size_t scores = 0, selected = 0, counts = 0, partial = 0, flags = 0;  // byte offsets
  SplitWorkspace split;                                                 // the split selection's buffers
  CoopWorkspace coop;                                                   // the cooperative selection's
  size_t bytes = 0;
  long long score_stride = 0;  // floats per score row
  int max_splits = 1;
  size_t score_slots = 0;  // an experiment's buffer (TKA_SCORE_SLOTS only; 0: none, scores come first)
};

// How the attend pass splits each row's selected keys over CTAs.
struct AttendSplit {
  int splits = 1;
  int split_len = 0;
};
AttendSplit attend_split(int rows, int max_k, const DecodeConfig& config, int sm_count);

class DecodePlan : public Plan {
 public:
  // `config` forces a launch configuration (the tuner); nullptr asks the runtime for one.
  static Status create(Runtime& runtime, const tka_decode_desc& desc, std::unique_ptr<DecodePlan>* out,
                       const DecodeConfig* config = nullptr);

  Status run(const tka_tensors& tensors, void* workspace, CUstream stream) const override;
  size_t workspace_bytes() const override { return ws_.bytes; }
  int max_k() const override { return op_.max_k; }
  const std::string& spec_text() const override { return spec_text_; }
  const DecodeConfig& config() const { return kspec_.config; }
  const DecodeOp& op() const { return op_; }
  // CTAs per selection row in a cluster (select_split 3) when the plan runs `sel_rows` selection
  // rows (0: the split selection or the grid instead).
  int select_cluster_ctas(int sel_rows) const;

 private:
  DecodeOp op_;
  DecodeKernelSpec kspec_;
  std::string spec_text_;
  DecodeWorkspace ws_;
  bool compile_only_ = false;
  DeviceInfo device_;
  std::shared_ptr<const LoadedModule> module_;

  Status build(Runtime& runtime, const DecodeConfig& config, bool full_check = false);
  Status check_launchable(bool full);  // also reads the score kernel's occupancy
  int score_ctas_per_sm_ = 1;
  CoopResidency coop_residency_;  // decode_select_coop's, when select_split is 2
  // decode_select_cluster's dynamic shared memory (0: no clusters: below sm_90, or no room for
  // the ring) and the clusters of each size the device runs at once, when select_split is 3.
  int cluster_bytes_ = 0;
  ClusterResidency resident_clusters_{};
};

}  // namespace tka
