#include <cstdio>

#include "tools/commands.h"

namespace tka::tools {
int run_main_job() { std::printf("TODO\n"); return 0; }
}  // namespace tka::tools
