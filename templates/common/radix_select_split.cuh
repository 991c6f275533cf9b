// Exact top-s selection of one row split over many CTAs, for when rows are fewer than SMs (a
// decode step at batch 1 has 32 rows of up to 128K keys: one CTA per row leaves most of the GPU
// idle, each CTA bound by load latency). Same result, same output order as radix_select_row:
//
//   phase 1  (CTA per chunk)  level-0 histogram of the chunk, added to the row's (global atomics)
//   phase 2  (CTA per chunk)  threshold bin from the row's histogram; the chunk's counts of keys
//                             above it ("sure") and inside it (candidates)
//   phase 3  (CTA per chunk)  offsets from the earlier chunks' counts; sure keys to their output
//                             slots, candidates to the row's candidate buffer, in index order
//   phase 4  (CTA per row)    candidates refined in shared memory (radix_select.cuh); when they
//                             did not fit, the whole row is selected again by radix_select_row.
//
// Chunks start at multiples of 4 keys. The row's histogram must be zero before phase 1.
#pragma once
#include "common/radix_select.cuh"

namespace tka {

struct SplitSelectRow {
  u32* hist;       // [2048] level-0 histogram of the row
  int* counts;     // [2 * chunks] {sure, candidates} per chunk
  u32* cand_key;   // [candidate capacity]
  int* cand_idx;
};

// Shared memory of phases 1-3: the histogram and scratch; no candidates.
using SplitSelectSmem = RadixSelectSmem<4>;

template <int kThreads, class Keys>
__device__ __forceinline__ void split_histogram(SplitSelectSmem& sm, const Keys& keys, int begin,
                                                int end, const SplitSelectRow& row) {
  row_histogram<kThreads>(sm, keys, end, radix_level(0, 0), begin);
  for (int b = threadIdx.x; b < 2048; b += kThreads)
    if (sm.hist[b]) atomicAdd(&row.hist[b], sm.hist[b]);
}

// The row's level-0 threshold bin; leaves the row's histogram in sm.hist.
template <int kThreads, int kCapacity>
__device__ __forceinline__ void split_threshold(RadixSelectSmem<kCapacity>& sm,
                                                const SplitSelectRow& row, int s, int* bin,
                                                int* above) {
  for (int b = threadIdx.x; b < 2048; b += kThreads) sm.hist[b] = row.hist[b];
  __syncthreads();
  find_bin<kThreads, 2048>(sm, s, bin, above);
}

template <int kThreads, class Keys>
__device__ __forceinline__ void split_count(SplitSelectSmem& sm, const Keys& keys, int begin,
                                            int end, int s, int chunk, const SplitSelectRow& row) {
  int bin, above;
  split_threshold<kThreads>(sm, row, s, &bin, &above);
  const int2 c = classify_range<kThreads>(sm, keys, begin, end, static_cast<u32>(bin),
                                          [](int, int, u32) {}, [](int, u32, int) {});
  if (threadIdx.x == 0) row.counts[2 * chunk] = c.x, row.counts[2 * chunk + 1] = c.y;
}

template <int kThreads, int kCandCapacity, class Keys, class Out>
__device__ __forceinline__ void split_write(SplitSelectSmem& sm, const Keys& keys, int begin,
                                            int end, int s, int chunk, const SplitSelectRow& row,
                                            Out& out) {
  int bin, above;
  split_threshold<kThreads>(sm, row, s, &bin, &above);
  const bool keep = sm.hist[bin] <= static_cast<u32>(kCandCapacity);
  int sure = 0, cand = 0, total;
  for (int c = threadIdx.x; c < chunk; c += kThreads) sure += row.counts[2 * c], cand += row.counts[2 * c + 1];
  block_exclusive_sum<kThreads>(sure, sm.scratch, &total);
  const int sure_base = total;
  block_exclusive_sum<kThreads>(cand, sm.scratch, &total);
  const int cand_base = total;
  classify_range<kThreads>(
      sm, keys, begin, end, static_cast<u32>(bin),
      [&](int rank, int i, u32 key) { out.write(sure_base + rank, i, key); },
      [&](int rank, u32 key, int i) {
        if (keep) row.cand_key[cand_base + rank] = key, row.cand_idx[cand_base + rank] = i;
      });
}

template <int kThreads, int kCapacity, class Keys, class Out>
__device__ __forceinline__ void split_finish(RadixSelectSmem<kCapacity>& sm, const Keys& keys,
                                             int n, int s, const SplitSelectRow& row, Out& out) {
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
  for (int c = threadIdx.x; c < in_bin; c += kThreads)
    sm.cand_key[c] = row.cand_key[c], sm.cand_idx[c] = row.cand_idx[c];
  __syncthreads();
  refine_candidates<kThreads>(sm, in_bin, static_cast<u32>(bin), s - above, above, s, out);
}

}  // namespace tka
