// Times fidelity diagnostics configurations (fidelity_space) on the runtime's GPU, the same method
// as the other tuners: the key cache rotates over copies that exceed L2 four times; medians of
// CUDA event times; the winner must beat the default by 2% in an interleaved re-timing. Every
// candidate, run on poisoned buffers, must give the default's retained mass of the exact top-k
// (which checks its selection, whichever way it breaks ties), candidate mass and entropy.
#pragma once
#include "autotune/decode_tuner.h"
#include "runtime/runtime.h"

namespace tka {

// Tunes `desc` at its max_batch and max_seq_len (each rounded up to its power-of-two bucket),
// every sequence at full length, with a candidate selection of top_k distinct keys per head.
Status tune_fidelity(Runtime& runtime, const tka_fidelity_desc& desc, const TuneOptions& options, TuneResult* result);

// Bytes the diagnostics must move at least: every key once (the score pass reads a KV head's keys
// once per query head of its group; L2 serves part of that).
double fidelity_bytes_floor(const FidelityOp& op, long long batch, long long seq_len);

}  // namespace tka
