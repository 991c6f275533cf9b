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
#include "split_select_params.cuh"

namespace tka {

struct SplitSelectRow {
  u32* hist;       // [2048] level-0 histogram of the row
  int* counts;     // [2 * chunks] {sure, candidates} per chunk
  u32* stage_key;  // [chunks][stage]: per chunk, sure keys from slot 0, candidates from stage_sure
  int* stage_idx;
  int stage;       // slots per chunk: stage_sure + room for the candidates
  int stage_sure;  // room for the sure keys: min(chunk, k) (a chunk has fewer than s of them)
  int chunks;      // at most the CTA's threads (the finish scans one count a thread)
};

// Row `row`'s part of the split selection's buffers: [rows][2048] histograms, [rows][chunks][2]
// counts, [rows][chunks][stage] staging slots.
__device__ __forceinline__ SplitSelectRow split_select_row(const SplitSelectParams& s, int row) {
  const long long staged = static_cast<long long>(row) * s.chunks * s.stage;
  return {s.hist + row * 2048LL,
          s.counts + 2LL * row * s.chunks,
          s.stage_key + staged,
          s.stage_idx + staged,
          s.stage,
          s.stage_sure,
          s.chunks};
}

// The keys [*begin, *end) of a row of n that chunk `blockIdx.x` takes.
__device__ __forceinline__ void split_chunk_range(const SplitSelectParams& s, int n, int* begin, int* end) {
  *begin = blockIdx.x * s.chunk;
  *end = min(*begin + s.chunk, n);
}

// Shared memory of phases 1 and 2: the histogram and scratch; no candidates.
using SplitSelectSmem = RadixSelectSmem<4>;

// Phase 1 of one chunk: its keys [begin, end) added to the row's histogram.
template <int kThreads, class Keys>
__device__ __forceinline__ void split_histogram(SplitSelectSmem& sm, const Keys& keys, int begin, int end,
                                                const SplitSelectRow& row) {
  row_histogram<kThreads>(sm, keys, end, radix_level(0, 0), begin);
  for (int b = threadIdx.x; b < 2048; b += kThreads)
    if (sm.hist[b]) atomicAdd(&row.hist[b], sm.hist[b]);
}

// The row's level-0 threshold bin, the keys above it and in it (the histogram's count of the bin).
template <int kThreads, int kCapacity>
__device__ __forceinline__ int split_threshold(RadixSelectSmem<kCapacity>& sm, const SplitSelectRow& row, int s,
                                               int* bin, int* above) {
  // Every bin of this thread loaded before any is stored: one round trip, not one a bin (this
  // copy starts both kernels that call it, on the critical path of a batch-1 decode step).
  constexpr int kPer = (2048 + kThreads - 1) / kThreads;
  u32 h[kPer];
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int b = threadIdx.x + u * kThreads;
    h[u] = b < 2048 ? row.hist[b] : 0;
  }
#pragma unroll
  for (int u = 0; u < kPer; ++u)
    if (threadIdx.x + u * kThreads < 2048) sm.hist[threadIdx.x + u * kThreads] = h[u];
  __syncthreads();
  find_bin<kThreads, 2048>(sm, s, bin, above);
  return static_cast<int>(sm.hist[*bin]);
}

// Phase 2 over keys [begin, end) of the row, chunk `chunk` (an empty range still reports its
// counts: phase 3 sums them). When the row's candidates do not all fit in phase 3's shared memory
// (kCandCapacity), phase 3 selects the row again and reads nothing staged: nothing is.
template <int kThreads, int kCandCapacity, int kCapacity, class Keys>
__device__ __forceinline__ void split_classify(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int begin, int end,
                                               int s, int chunk, const SplitSelectRow& row) {
  int bin, above;
  if (split_threshold<kThreads>(sm, row, s, &bin, &above) > kCandCapacity) return;
  u32* key = row.stage_key + static_cast<long long>(chunk) * row.stage;
  int* idx = row.stage_idx + static_cast<long long>(chunk) * row.stage;
  const int2 c = classify_range<kThreads>(
      sm, keys, begin, end, static_cast<u32>(bin), [&](int rank, int i, u32 k) { key[rank] = k, idx[rank] = i; },
      [&](int rank, u32 k, int i) { key[row.stage_sure + rank] = k, idx[row.stage_sure + rank] = i; });
  if (threadIdx.x == 0) row.counts[2 * chunk] = c.x, row.counts[2 * chunk + 1] = c.y;
}

// The chunk whose staged run of field f (0: sure keys, 2: candidates; at[4c + f] its offset in the
// row, at[4c + f + 1] its count) holds the row's slot j: the last chunk whose run starts at or
// before j (an empty chunk starts where the next one does, so the last is the one that holds j).
__device__ __forceinline__ int staged_chunk(const u32* at, int chunks, int f, int j) {
  int lo = 0, hi = chunks - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (static_cast<int>(at[4 * mid + f]) <= j)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Slots [0, total) of field f's runs, each to emit(slot, index, key). A thread takes kBatch slots
// kThreads apart and loads all of them before it emits any: one round trip to the staged keys a
// batch (a warp a chunk waited one for every 32 keys of its chunk: 2.5 µs more of the finish at
// batch 1, bench/NOTES.md). Staged keys are read once: from L2 (__ldcg), not kept in L1.
template <int kThreads, class Emit>
__device__ __forceinline__ void gather_staged(const u32* at, const SplitSelectRow& row, int f, int first, int total,
                                              Emit&& emit) {
  constexpr int kBatch = 4;
  for (int start = 0; start < total; start += kBatch * kThreads) {
    u32 key[kBatch];
    int idx[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int j = start + u * kThreads + static_cast<int>(threadIdx.x);
      if (j >= total) continue;
      const int c = staged_chunk(at, row.chunks, f, j);
      const long long slot = static_cast<long long>(c) * row.stage + first + (j - static_cast<int>(at[4 * c + f]));
      key[u] = __ldcg(&row.stage_key[slot]);
      idx[u] = __ldcg(&row.stage_idx[slot]);
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int j = start + u * kThreads + static_cast<int>(threadIdx.x);
      if (j < total) emit(j, idx[u], key[u]);
    }
  }
}

template <int kThreads, int kCapacity, class Keys, class Out>
__device__ __forceinline__ void split_finish(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int n, int s,
                                             const SplitSelectRow& row, Out& out) {
  if (s >= n || s <= 0) {
    radix_select_row<kThreads>(sm, keys, n, s, out);
    return;
  }
  const int c = threadIdx.x;
  // The chunks' counts (one chunk a thread) asked for with the histogram, not after it.
  const int sure = c < row.chunks ? row.counts[2 * c] : 0;
  const int cand = c < row.chunks ? row.counts[2 * c + 1] : 0;
  int bin, above;
  const int in_bin = split_threshold<kThreads>(sm, row, s, &bin, &above);
  __syncthreads();  // everyone has read the histogram before refining clears it
  if (in_bin > kCapacity) {
    radix_select_row<kThreads>(sm, keys, n, s, out);
    return;
  }
  // Each chunk's offsets, a scan over the chunks' counts (one a thread), kept in the histogram's
  // first bins until refining clears them: sure offset, sure count, candidate offset and count.
  int sure_total, cand_total;
  const int sure_at = block_exclusive_sum<kThreads>(sure, sm.scratch, &sure_total);
  const int cand_at = block_exclusive_sum<kThreads>(cand, sm.scratch, &cand_total);
  u32* at = sm.hist;
  if (c < row.chunks) at[4 * c] = sure_at, at[4 * c + 1] = sure, at[4 * c + 2] = cand_at, at[4 * c + 3] = cand;
  __syncthreads();
  // Every thread gathers slots of the row's outputs and candidates (the totals equal `above` and
  // in_bin), a batch of loads in flight.
  gather_staged<kThreads>(at, row, 0, 0, sure_total, [&](int j, int i, u32 k) { out.write(j, i, k); });
  gather_staged<kThreads>(at, row, 2, row.stage_sure, cand_total, [&](int j, int i, u32 k) {
    sm.cand_key[j] = k;
    sm.cand_idx[j] = i;
  });
  __syncthreads();
  refine_candidates<kThreads>(sm, in_bin, static_cast<u32>(bin), s - above, above, s, out);
}

}  // namespace tka
