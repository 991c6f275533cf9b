// The default launch/tile configuration of the decode kernels when no tuning entry applies.
#pragma once
#include "codegen/decode_spec.h"

namespace tka {

DecodeConfig default_decode_config(const DecodeOp& op);

// Shared memory of the attend kernel for a chunk length: indices, weights, the reduction rows.
int attend_static_smem(int heads, int head_dim, int chunk);

}  // namespace tka
