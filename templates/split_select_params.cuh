// The split selection's part of a kernel's parameters (radix_select_split.cuh), one struct in both
// decode's (DecodeParams::select_split) and the selection op's (SelectParams::split), filled by the
// host with split_select_params (runtime/select_split.h); and the cooperative selection's
// (radix_select_coop.cuh). Plain C++, as the other params headers.
#pragma once

namespace tka {

struct SplitSelectParams {
  unsigned* hist;       // [rows, 2048] level-0 histograms, zeroed before each run
  int* counts;          // [rows, 2 * chunks]
  unsigned* stage_key;  // [rows, chunks, stage]: each chunk's staged keys
  int* stage_idx;       // the same for their indices
  int stage;            // slots per chunk
  int stage_sure;       // of which the first hold the keys above the threshold bin
  int chunk;            // keys per CTA, a multiple of 4; 0: one CTA per row (no split)
  int chunks;           // CTAs per row
};

// The cooperative selection's buffers (radix_select_coop.cuh): rows split over one cooperative grid.
struct CoopSelectParams {
  unsigned* hist;  // [rows, 3, 2048] per-level histograms, zeroed by the kernel itself
  int* counts;     // [rows, chunks, 2]
  int chunk;       // keys per CTA, a multiple of 4; 0: not used
  int chunks;      // CTAs per row
};

}  // namespace tka
