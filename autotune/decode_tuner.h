// Times decode launch configurations on the runtime's GPU and picks the fastest.
//
// Method: every compiled variant of decode_compiled_space() is built (in parallel, through the
// kernel cache) and checked against the device's limits; each is timed with CUDA events, the
// median of `repeats` runs after `warmup`, with its inputs rotated over enough copies that
// together exceed L2 several times, so no run finds its keys in cache. The best compiled variant
// is then timed over decode_launch_space(). A candidate's output must match the default config's
// output before its time counts.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autotune/tuning_db.h"
#include "runtime/runtime.h"

namespace tka {

struct TuneOptions {
  int warmup = 2;
  int repeats = 9;
  int compile_jobs = 0;  // 0: all cores
  // Called after every timed candidate: (done, total) for a progress bar.
  std::function<void(int, int)> progress;
};

struct TuneResult {
  TuningEntry entry;   // best config, its time, the default's time; device, shape, buckets
  int candidates = 0;  // configs timed
  int pruned = 0;      // configs the device cannot run (shared memory, registers, threads)
  int rejected = 0;    // configs whose output differed from the default's
  double bytes = 0;    // bytes that must move (all keys, plus the selected value rows)
  double copy_bytes_per_second = 0;
  std::vector<std::string> notes;  // why configs were pruned or rejected; each timed one's median
};

// Tunes `desc` at its max_batch and max_seq_len (each rounded up to a power of two: the
// bucket that the entry is stored under), every sequence at full length.
Status tune_decode(Runtime& runtime, const tka_decode_desc& desc, const TuneOptions& options, TuneResult* result);

// Bytes a decode step must move: every visible key, plus each selection's value rows.
double decode_bytes_floor(const DecodeOp& op, long long batch, long long seq_len);

}  // namespace tka
