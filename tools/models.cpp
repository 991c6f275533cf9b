// `topkattn models`: the built-in model presets.
#include <cstdio>

#include "tools/commands.h"

namespace tka::tools {

int run_models() { return 2; }

}  // namespace tka::tools
