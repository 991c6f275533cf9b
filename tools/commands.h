// The `topkattn` subcommands. Each returns the process exit code.
#pragma once
#include "autotune/presets.h"
#include "topkattn/topkattn.h"

namespace tka::tools {

int run_emit();
int run_prewarm();
int run_main_job();
int run_models();
int run_tune();

// `topkattn run` on a GPU for a DeepSeek Sparse Attention preset: the fused indexer decode.
int run_indexer_on_gpu(tka_runtime* rt, const ModelPreset& preset);

// `topkattn analyze` (tools/analyze.cpp owns its subcommand).
bool analyze_command_selected();
int run_analyze();

// `topkattn cache ls|stat|verify|prune|clear` (tools/cache_command.cpp owns its subcommand).
bool cache_command_selected();
int run_cache_command();

}  // namespace tka::tools
