// `topkattn cache ls | stat | verify | prune | clear`: inspect and maintain the kernel cache.
#include <cstdio>

#include <llvm/Support/CommandLine.h>

#include "tools/commands.h"

namespace tka::tools {

static llvm::cl::SubCommand kCache("cache", "Inspect and maintain the kernel cache (ls, stat, verify, prune, clear)");

bool cache_command_selected() { return static_cast<bool>(kCache); }

int run_cache_command() {
  std::fprintf(stderr, "topkattn cache: not implemented yet\n");
  return 2;
}

}  // namespace tka::tools
