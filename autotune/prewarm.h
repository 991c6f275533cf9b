// Compiles every kernel of a preset for a list of archs into the disk cache, in parallel, with no
// GPU: the default configuration of each of its descriptors plus what a tuning database holds.
#pragma once
#include <string>
#include <vector>

#include "autotune/presets.h"
#include "autotune/tuning_db.h"
#include "codegen/render.h"

namespace tka {

struct PrewarmSummary {
  int compiled = 0, cached = 0, failed = 0;
  double seconds = 0;
  std::vector<std::string> errors;
};

struct PrewarmJob {
  int sm;
  codegen::RenderedSource source;
};

// The distinct kernels a preset needs per arch: the default config of each of its descriptors,
// plus every config that `db` holds for that shape and arch.
std::vector<PrewarmJob> prewarm_jobs(const ModelPreset& preset, const std::vector<int>& archs, const TuningDb* db,
                                     int max_batch, int max_seq_len);

// Compiles `work` into the disk cache at `cache_dir` ("" = the default root), `jobs` at a time
// (0 = all cores); with a `progress_label`, a progress line on stderr. A job fails on an error or
// an empty CUBIN; each failure is one line of `errors` (name, spec text, arch, why).
PrewarmSummary compile_jobs(const std::vector<PrewarmJob>& work, const std::string& cache_dir, int jobs,
                            const char* progress_label = nullptr);

// `archs` as sm numbers; `jobs` 0 = all cores; `progress` prints a line on stderr.
PrewarmSummary prewarm(const ModelPreset& preset, const std::vector<int>& archs, const std::string& cache_dir, int jobs,
                       int max_batch, int max_seq_len, bool progress, const TuningDb* db = nullptr);

}  // namespace tka
