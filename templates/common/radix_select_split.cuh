// Exact top-s selection of one row split over many CTAs, for when rows are fewer than SMs (a
// decode step at batch 1 has 32 rows of up to 128K keys: one CTA per row leaves most of the GPU
// idle, each CTA bound by load latency). Same result, same output order as radix_select_row:
//
//   phase 1  (CTA per chunk)  level-0 histogram of the chunk, added to the row's (global atomics)
//   phase 2  (CTA per chunk)  threshold bin from the row's histogram; the chunk's keys above it
//                             ("sure") and inside it (candidates) staged in the chunk's own slots,
//                             in index order, with their counts
//   phase 3  (CTA per row)    offsets from the chunks' counts; sure keys to their output slots,
//                             candidates into shared memory, refined there (radix_select.cuh);
//                             when they did not fit, the whole row is selected again by
//                             radix_select_row.
//
// Each chunk stages into slots of its own, so phase 2 needs no offsets from the chunks before it
// (one pass over the keys, not a count and a write) and the output stays in index order. Chunks
// start at multiples of 4 keys. The row's histogram must be zero before phase 1.
#pragma once
#include "common/radix_select.cuh"

namespace tka {

struct SplitSelectRow {
  u32* hist;       // [2048] level-0 histogram of the row
  int* counts;     // [2 * chunks] {sure, candidates} per chunk
  u32* stage_key;  // [chunks][stage]: per chunk, sure keys from slot 0, candidates from stage_sure
  int* stage_idx;
  int stage;       // slots per chunk: stage_sure + room for the candidates
  int stage_sure;  // slots for the sure keys (fewer than s, at most the chunk)
  int chunks;
};

// Shared memory of phases 1 and 2: the histogram and scratch; no candidates.
using SplitSelectSmem = RadixSelectSmem<4>;

template <int kThreads, class Keys>
__device__ __forceinline__ void split_histogram(SplitSelectSmem& sm, const Keys& keys, int begin, int end,
                                                const SplitSelectRow& row) {
  row_histogram<kThreads>(sm, keys, end, radix_level(0, 0), begin);
  for (int b = threadIdx.x; b < 2048; b += kThreads)
    if (sm.hist[b]) atomicAdd(&row.hist[b], sm.hist[b]);
}

// The row's level-0 threshold bin; leaves the row's histogram in sm.hist.
template <int kThreads, int kCapacity>
__device__ __forceinline__ void split_threshold(RadixSelectSmem<kCapacity>& sm, const SplitSelectRow& row, int s,
                                                int* bin, int* above) {
  for (int b = threadIdx.x; b < 2048; b += kThreads) sm.hist[b] = row.hist[b];
  __syncthreads();
  find_bin<kThreads, 2048>(sm, s, bin, above);
}

// Phase 2 over keys [begin, end) of the row, chunk `chunk` (an empty range still reports its
// counts: phase 3 sums them). The candidates are staged only when all of the row's fit in phase
// 3's shared memory (kCandCapacity); otherwise phase 3 selects the row again.
template <int kThreads, int kCandCapacity, class Keys>
__device__ __forceinline__ void split_classify(SplitSelectSmem& sm, const Keys& keys, int begin, int end, int s,
                                               int chunk, const SplitSelectRow& row) {
  int bin, above;
  split_threshold<kThreads>(sm, row, s, &bin, &above);
  const bool keep = sm.hist[bin] <= static_cast<u32>(kCandCapacity);
  u32* key = row.stage_key + static_cast<long long>(chunk) * row.stage;
  int* idx = row.stage_idx + static_cast<long long>(chunk) * row.stage;
  const int2 c = classify_range<kThreads>(
      sm, keys, begin, end, static_cast<u32>(bin), [&](int rank, int i, u32 k) { key[rank] = k, idx[rank] = i; },
      [&](int rank, u32 k, int i) {
        if (keep) key[row.stage_sure + rank] = k, idx[row.stage_sure + rank] = i;
      });
  if (threadIdx.x == 0) row.counts[2 * chunk] = c.x, row.counts[2 * chunk + 1] = c.y;
}

template <int kThreads, int kCapacity, class Keys, class Out>
__device__ __forceinline__ void split_finish(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int n, int s,
                                             const SplitSelectRow& row, Out& out) {
  if (s >= n || s <= 0) {
    radix_select_row<kThreads>(sm, keys, n, s, out);
    return;
  }
  int bin, above;
  split_threshold<kThreads>(sm, row, s, &bin, &above);
  const int in_bin = sm.hist[bin];
  __syncthreads();  // everyone has read the histogram before refining clears it
  if (in_bin > kCapacity) {
    radix_select_row<kThreads>(sm, keys, n, s, out);
    return;
  }
  // The chunks' staged keys in chunk order (index order): sure keys to the output, candidates
  // into shared memory; their totals are `above` and in_bin.
  int sure_base = 0, cand_base = 0;
  for (int c = 0; c < row.chunks; ++c) {
    const int sure = row.counts[2 * c], cand = row.counts[2 * c + 1];
    const u32* key = row.stage_key + static_cast<long long>(c) * row.stage;
    const int* idx = row.stage_idx + static_cast<long long>(c) * row.stage;
    for (int j = threadIdx.x; j < sure; j += kThreads) out.write(sure_base + j, idx[j], key[j]);
    for (int j = threadIdx.x; j < cand; j += kThreads)
      sm.cand_key[cand_base + j] = key[row.stage_sure + j], sm.cand_idx[cand_base + j] = idx[row.stage_sure + j];
    sure_base += sure, cand_base += cand;
  }
  __syncthreads();
  refine_candidates<kThreads>(sm, in_bin, static_cast<u32>(bin), s - above, above, s, out);
}

}  // namespace tka
