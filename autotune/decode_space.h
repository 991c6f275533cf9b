// The launch configurations a decode op may be tuned over. Compiled choices (threads per pass,
// chunk sizes) make a kernel each; launch choices (score waves, attend split) reuse a kernel.
#pragma once
#include <vector>

#include "codegen/decode_spec.h"

namespace tka {

// Every compiled variant worth timing, the heuristic default first. Variants that exceed what
// any sm_80+ device offers (shared memory) are left out here; the tuner prunes the rest per
// device from the compiled kernels' attributes.
std::vector<DecodeConfig> decode_compiled_space(const DecodeOp& op);

// How many of the compiled knobs that decode_compiled_space varies one at a time (threads per
// pass, the attend chunk) differ between two configs: the variants one knob away from the default
// are those the compile and GPU tests cover.
inline int compiled_knobs_apart(const DecodeConfig& a, const DecodeConfig& b) {
  return (a.score_threads != b.score_threads) + (a.select_threads != b.select_threads) +
         (a.attend_threads != b.attend_threads) + (a.attend_chunk != b.attend_chunk);
}

// Launch variants of one compiled config, `base` first; select_split 3 (clusters) only where the
// device runs clusters (sm_90+: below, it runs as 1, and is not timed beside 1).
std::vector<DecodeConfig> decode_launch_space(const DecodeConfig& base, bool clusters = true);

// Shared memory a config's kernels need, by the same formulas as templates/decode.cuh.
int decode_score_smem(const DecodeKernelSpec& spec);
// Keys per score tile: 16 per warp (ScoreShape::kTile).
inline int decode_score_tile(const DecodeConfig& c) { return c.score_threads / 2; }
int decode_attend_smem(const DecodeKernelSpec& spec);
int decode_select_smem(const DecodeKernelSpec& spec);

}  // namespace tka
