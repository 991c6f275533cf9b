#include "autotune/decode_heuristic.h"

#include <algorithm>

#include "autotune/decode_space.h"

namespace tka {

DecodeConfig default_decode_config(const DecodeOp& op) {
  DecodeConfig c;
  const int rows = op.group * op.desc.q_len;
  // Four warps, 16 keys each per tile: 64-key tiles, 3 in flight (2 at d = 256).
  c.score_threads = 128;
  // All query rows of a KV head in one CTA when they fit (up to 4 m-tiles), so K is read once.
  c.score_row_tile = std::min((rows + 15) / 16 * 16, 64);
  c.select_threads = 512;
  c.select_capacity = 4096;
  c.attend_threads = 128;
  c.attend_chunk = 2048;
  while (c.attend_chunk > 64 && decode_attend_smem(kernel_spec_for(op, c)) > 48 * 1024) c.attend_chunk /= 2;
  return c;
}

}  // namespace tka
