// A plan for fidelity diagnostics on the GPU (contract: include/topkattn/topkattn.h); tka_fidelity_host is the CPU
// twin. Scores, exact selection and statistics: three launches, all in the caller's workspace.
#pragma once
#include <memory>
#include <string>

#include "codegen/fidelity_spec.h"
#include "codegen/render.h"
#include "runtime/plan.h"
#include "runtime/runtime.h"

namespace tka {

struct FidelityWorkspace {
  size_t scores = 0, row_len = 0, exact = 0, bits = 0, bytes = 0;  // byte offsets
  long long score_stride = 0, bit_words = 0;
};

class FidelityPlan : public Plan {
 public:
  // `config`: the launch configuration (the tuner's candidates); null for the runtime's choice
  // (tuning database, else the heuristic default).
  static Status create(Runtime& runtime, const tka_fidelity_desc& desc, std::unique_ptr<FidelityPlan>* out,
                       const FidelityConfig* config = nullptr);

  Status run(const tka_tensors& tensors, void* workspace, CUstream stream) const override;
  size_t workspace_bytes() const override { return ws_.bytes; }
  int max_k() const override { return op_.desc.top_k; }
  const std::string& spec_text() const override { return spec_text_; }
  const FidelityConfig& config() const { return config_; }

 private:
  FidelityOp op_;
  FidelityConfig config_;
  FidelityKernelSpec kspec_;
  std::string spec_text_;
  FidelityWorkspace ws_;
  bool compile_only_ = false;
  DeviceInfo device_;
  std::shared_ptr<const LoadedModule> module_;
};

}  // namespace tka
