// Fidelity diagnostics (design section 2.6): the validated request and the kernels' spec.
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

struct FidelityKernelSpec {
  tka_dtype dtype = TKA_DTYPE_BF16;
  int head_dim = 128;
  int select_threads = 512;
  int select_capacity = 4096;
  std::string text() const;        // "op=fidelity;dtype=bf16;d=128;ss=512;sc=4096"
  std::string short_name() const;  // "fidelity_bf16_d128"
};

}  // namespace tka
