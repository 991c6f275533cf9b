// Helpers of the prewarm and run commands (the work itself is autotune/prewarm.h).
#pragma once
#include <string>
#include <vector>

#include "autotune/prewarm.h"

namespace tka::tools {

// "sm_80,sm_90" -> {80, 90}; *error names --arch.
bool parse_arch_list(const std::string& text, std::vector<int>* archs, std::string* error);

}  // namespace tka::tools
