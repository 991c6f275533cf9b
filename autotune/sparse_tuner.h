// Times sparse attention configurations (sparse_space) on the runtime's GPU, the same method as
// the other tuners: the key/value cache rotates over copies that exceed L2 four times; medians of
// CUDA event times; the winner must beat the default by 2% in an interleaved re-timing. Outputs
// are compared with the default's within a tolerance, not bit for bit: a config that splits the
// lists differently merges partial sums in another order.
#pragma once
#include "autotune/decode_tuner.h"
#include "runtime/runtime.h"

namespace tka {

// Tunes `desc` (contiguous cache) at desc.max_batch sequences (rounded up to its power-of-two
// bucket) of seq_len cached tokens each, every list holding index_width distinct indices.
Status tune_sparse(Runtime& runtime, const tka_sparse_desc& desc, long long seq_len, const TuneOptions& options,
                   TuneResult* result);

}  // namespace tka
