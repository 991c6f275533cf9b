// Compiles every kernel of a preset for a list of archs into the disk cache, in parallel.
#pragma once
#include <string>
#include <vector>

#include "autotune/presets.h"

namespace tka::tools {

struct PrewarmSummary {
  int compiled = 0, cached = 0, failed = 0;
  double seconds = 0;
  std::vector<std::string> errors;
};

// `archs` as sm numbers; `jobs` 0 = all cores; `progress` prints a line on stderr.
PrewarmSummary prewarm(const ModelPreset& preset, const std::vector<int>& archs, const std::string& cache_dir,
                       int jobs, int max_batch, int max_seq_len, bool progress);

bool parse_arch_list(const std::string& text, std::vector<int>* archs, std::string* error);

}  // namespace tka::tools
