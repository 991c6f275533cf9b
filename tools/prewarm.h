// Helpers of the prewarm and run commands (the work itself is autotune/prewarm.h).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "autotune/prewarm.h"
#include "autotune/tuning_db.h"

namespace tka::tools {

// "sm_80,sm_90" -> {80, 90}; *error names --arch.
bool parse_arch_list(const std::string& text, std::vector<int>* archs, std::string* error);

// The tuning database that --db names, else $TOPKATTN_TUNING_DB, else none; its warnings go to
// stderr as "topkattn <command>: warning: ...".
std::optional<TuningDb> load_db_option(const char* command);

}  // namespace tka::tools
