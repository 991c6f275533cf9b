// The launch configurations fidelity diagnostics may be tuned over: the exact selection's threads
// per CTA (compiled: more threads scan a long row's scores faster, fewer leave room for more CTAs)
// and the keys one CTA of the score pass takes (launch-time: fewer fill the GPU at small batch,
// more amortize each CTA's query load).
#pragma once
#include <vector>

#include "codegen/fidelity_spec.h"

namespace tka {

// The heuristic: 512 selection threads, 256 keys per score CTA.
FidelityConfig default_fidelity_config(const FidelityOp& op);

// The heuristic default first, then selection threads 512, 256, 1024 by 256, 128, 512 and 1024
// keys per score CTA, each combination once.
std::vector<FidelityConfig> fidelity_space(const FidelityOp& op);

// Whether a config (from a tuning database, say) is one the kernels accept.
bool fidelity_config_sane(const FidelityConfig& c);

}  // namespace tka
