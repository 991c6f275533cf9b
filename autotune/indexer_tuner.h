// Times Lightning Indexer scores configurations (indexer_space) on the runtime's GPU, the same
// method as the decode and selection tuners: each candidate's scores must equal the default
// config's bit for bit before its time counts (every token's arithmetic is the same whatever the
// config); the indexer keys rotate over copies that exceed L2 four times; medians of CUDA event
// times; the winner must beat the default by 2% in an interleaved re-timing.
#pragma once
#include "autotune/decode_tuner.h"
#include "runtime/runtime.h"

namespace tka {

// Tunes the scores kernel of `desc` (contiguous indexer cache) at desc.max_batch sequences of
// desc.max_seq_len tokens (each rounded up to its power-of-two bucket). top_k and the attention
// part are ignored: the entry serves scores-only and fused plans of the same indexer shape.
Status tune_indexer(Runtime& runtime, const tka_indexer_desc& desc, const TuneOptions& options, TuneResult* result);

}  // namespace tka
