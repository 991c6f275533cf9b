// Times top-k selection configurations (select_space) on the runtime's GPU, the same method as
// the decode tuner: every candidate's output (its selected set) must equal the default config's
// before its time counts; inputs rotate over copies that exceed L2 four times; medians of CUDA
// event times; the winner must beat the default by 2% in an interleaved re-timing.
#pragma once
#include "autotune/decode_tuner.h"
#include "runtime/runtime.h"

namespace tka {

// Tunes `desc` at max_rows rows of max_n random values (each rounded up to its bucket).
Status tune_select(Runtime& runtime, const tka_select_desc& desc, const TuneOptions& options, TuneResult* result);

}  // namespace tka
