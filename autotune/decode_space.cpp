#include "autotune/decode_space.h"

#include <algorithm>

#include "autotune/decode_heuristic.h"

namespace tka {
namespace {

// The opt-in shared memory of the smallest supported device (sm_80: 163 KiB); larger configs
// are still tried on devices that have more, after the tuner's per-device check.
constexpr int kMaxSmemAnyDevice = 227 * 1024;
constexpr int kStaticSmemLimit = 48 * 1024;  // select and attend use static shared memory

void add_unique(std::vector<DecodeConfig>* out, const DecodeConfig& c) {
  if (std::find(out->begin(), out->end(), c) == out->end()) out->push_back(c);
}

}  // namespace

int decode_score_smem(const DecodeKernelSpec& k) {  // ScoreShape::kSmemBytes
  const int pitch = k.head_dim * 2 + 16, stages = k.head_dim == 256 ? 2 : 3;
  return k.config.score_row_tile * pitch + stages * decode_score_tile(k.config) * pitch;
}

int decode_attend_smem(const DecodeKernelSpec& k) {  // decode_attend's __shared__ arrays
  const int heads = k.per_group ? k.group : 1;
  const int chunk = k.config.attend_chunk;
  const int slots = k.paged ? chunk : 0;  // paged: each key's place in its page, a byte
  return chunk * 4 + slots + heads * chunk * 4 + heads * k.head_dim * 4 + heads * 8 + 300;
}

int decode_select_smem(const DecodeKernelSpec& k) {  // RadixSelectSmem
  return 2048 * 4 + k.config.select_capacity * 8 + 300;
}

std::vector<DecodeConfig> decode_compiled_space(const DecodeOp& op) {
  const DecodeConfig base = default_decode_config(op);
  std::vector<DecodeConfig> out{base};
  for (int st : {64, 128, 256}) {
    for (int ss : {256, 512, 1024}) {
      for (int at : {64, 128, 256}) {
        for (int ac : {base.attend_chunk, base.attend_chunk / 2}) {
          DecodeConfig c = base;
          c.score_threads = st;
          c.select_threads = ss;
          c.attend_threads = at;
          c.attend_chunk = ac;
          const DecodeKernelSpec k = kernel_spec_for(op, c);
          if (ac < 64 || decode_score_smem(k) > kMaxSmemAnyDevice || decode_attend_smem(k) > kStaticSmemLimit ||
              decode_select_smem(k) > kStaticSmemLimit)
            continue;
          add_unique(&out, c);
        }
      }
    }
  }
  return out;
}

std::vector<DecodeConfig> decode_launch_space(const DecodeConfig& base, bool clusters) {
  std::vector<DecodeConfig> out{base};
  // Without clusters select_split 3 runs as 1: a default of 3 is not timed again as 1.
  DecodeConfig base_runs_as = base;
  if (!clusters && base.select_split == 3) base_runs_as.select_split = 1;
  for (int split : {3, 2, 1, 0}) {
    if (split == 3 && !clusters) continue;
    for (int waves : {0, 1, 2, 4}) {
      for (int min_split : {64, 128, 256}) {
        DecodeConfig c = base;
        c.score_waves = waves;
        c.attend_min_split = min_split;
        c.select_split = split;
        if (c != base_runs_as) add_unique(&out, c);
      }
    }
  }
  return out;
}

}  // namespace tka
