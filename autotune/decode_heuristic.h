// The default launch/tile configuration of the decode kernels when no tuning entry applies.
#pragma once
#include "codegen/decode_spec.h"

namespace tka {

DecodeConfig default_decode_config(const DecodeOp& op);

}  // namespace tka
