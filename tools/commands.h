// The `topkattn` subcommands. Each returns the process exit code.
#pragma once

namespace tka::tools {

int run_emit();
int run_prewarm();
int run_main_job();

}  // namespace tka::tools
