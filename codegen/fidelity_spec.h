// Fidelity diagnostics (contract: include/topkattn/topkattn.h): the validated request and the kernels' spec.
#pragma once
#include <string>

#include "common/status.h"
#include "topkattn/topkattn.h"

namespace tka {

struct FidelityOp {
  tka_fidelity_desc desc{};  // scale filled in
  int group = 0;
};

// `host`: the CPU path, which takes any head_dim up to 1024. Messages name the field.
Status validate_fidelity(const tka_fidelity_desc& desc, bool host, FidelityOp* op);

// The launch choices of the fidelity kernels (autotune/fidelity_space.h).
struct FidelityConfig {
  int select_threads = 512;  // threads per CTA of the exact selection (compiled)
  int keys_per_cta = 256;    // launch-time: keys one CTA of the score pass takes
  bool operator==(const FidelityConfig& o) const {
    return select_threads == o.select_threads && keys_per_cta == o.keys_per_cta;
  }
  bool operator!=(const FidelityConfig& o) const { return !(*this == o); }
  std::string text() const;  // "ss=512 kpc=256"
};

struct FidelityKernelSpec {
  tka_dtype dtype = TKA_DTYPE_BF16;
  int head_dim = 128;
  int select_threads = 512;
  int select_capacity = 4096;
  std::string text() const;        // "op=fidelity;dtype=bf16;d=128;ss=512;sc=4096"
  std::string short_name() const;  // "fidelity_bf16_d128"
};

// The kernels' spec under a config.
FidelityKernelSpec fidelity_kernel_spec(const FidelityOp& op, const FidelityConfig& config);

}  // namespace tka
