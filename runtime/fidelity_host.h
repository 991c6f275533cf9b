// Fidelity diagnostics on the CPU in fp64 (tka_fidelity_host; `topkattn analyze` without a GPU).
#pragma once
#include "common/status.h"
#include "topkattn/topkattn.h"

namespace tka {

Status fidelity_host(const tka_fidelity_desc& desc, const tka_tensors& tensors);

}  // namespace tka
