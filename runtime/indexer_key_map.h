// The indexer's key cache as a tensor map for the copy engine (TKA_INDEXER_TMA, sm_90).
#pragma once
#include "runtime/driver.h"
#include "runtime/tensor_check.h"
#include "templates/indexer_params.cuh"

namespace tka {

// The contiguous FP8 keys [>= B, capacity, 128] as a tensor map for the wgmma path's copies
// (indexer_params.cuh), when the copy engine can address them (16-byte aligned start and strides,
// each stride at least the extent inside it; a sequence dimension of 1 has no stride that
// matters); otherwise, or when the driver lacks the encoder (an optional entry point) or declines
// the map, p->use_k_map stays 0 and the kernel copies by cp.async. Called with the plan's context
// current.
void encode_indexer_key_map(const DriverApi* api, const TensorView& k, int capacity, IndexerParams* p);

}  // namespace tka
