// Exact top-s selection of few long rows by one cooperative grid (grid_barrier.cuh): each CTA holds
// one chunk of a row in shared memory as order keys, and the CTAs of a row agree on its threshold
// key level by level (11, 11 and 10 bits, as radix_select.cuh):
//
//   each level   the chunk's histogram of the level's digit (keys matching the prefix so far) in
//                shared memory, added to the row's in global memory; a grid barrier; every CTA of
//                the row reads the row's histogram and finds the same digit. A level whose bin
//                holds exactly the keys still needed ends the search early.
//   then         each chunk publishes its counts above and at the threshold; a grid barrier; each
//                CTA writes its keys above it, and its share of the keys equal to it (ties to the
//                lower index), at offsets from the chunks before it.
//
// Output order: the keys above the threshold in index order, then the threshold-valued ones in
// index order. The row is read from memory once, and nothing is staged in global memory: the
// split selection's three kernels (radix_select_split.cuh) in one, with one round trip to L2 and
// one barrier per level instead of a kernel boundary and a pass over the keys.
//
// Every CTA of the grid must call coop_select_row (barriers are grid-wide), the same number of
// barriers each: rows with nothing to select still take part.
#pragma once
#include "common/grid_barrier.cuh"
#include "common/phase_clock.cuh"
#include "common/radix_select.cuh"
#include "split_select_params.cuh"

namespace tka {

struct CoopSelectRow {
  u32* hist;    // [3][2048] the row's histograms, one per level (zeroed here)
  int* counts;  // [chunks][2] {above, equal} per chunk
  int chunk;    // which chunk of the row this CTA holds
  int chunks;   // CTAs per row, at most the CTA's threads
};

using CoopSelectSmem = RadixSelectSmem<4>;

// A chunk's order keys in shared memory as radix_select.cuh's Keys (row_histogram reads them).
struct SharedKeys {
  const u32* k;
  int n;
  __device__ __forceinline__ u32 key(int i) const { return k[i]; }
  __device__ __forceinline__ void load4(int i, u32 (&out)[4]) const {
#pragma unroll
    for (int e = 0; e < 4; ++e) out[e] = i + e < n ? k[i + e] : 0u;
  }
};

// Row `row`'s part of the buffers ([rows][3][2048] histograms, [rows][chunks][2] counts), as CTA
// (blockIdx.x, row) of the grid (chunks, rows) sees it.
__device__ __forceinline__ CoopSelectRow coop_select_row_of(const CoopSelectParams& p, int row) {
  return {p.hist + row * 3LL * 2048, p.counts + 2LL * row * p.chunks, static_cast<int>(blockIdx.x), p.chunks};
}

// The chunk's keys [begin, begin + len) of its row into shared memory (begin % 4 == 0), four a
// thread at a time; `keys` as radix_select.cuh describes it (load4 reads nothing past the row).
template <int kThreads, class Keys>
__device__ __forceinline__ void coop_load_chunk(const Keys& keys, int begin, int len, u32* chunk_keys) {
  for (int i = 4 * threadIdx.x; i < len; i += 4 * kThreads) {
    u32 k[4];
    keys.load4(begin + i, k);
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (i + e < len) chunk_keys[i + e] = k[e];
  }
  __syncthreads();
}

// The row's histograms zeroed by its CTAs together; the caller arrives at a grid barrier after it
// and waits before coop_select_row's first global add.
template <int kThreads>
__device__ __forceinline__ void coop_zero_histograms(const CoopSelectRow& row) {
  for (int i = row.chunk * kThreads + threadIdx.x; i < 3 * 2048; i += row.chunks * kThreads) row.hist[i] = 0;
}

// keys[0, len): the chunk's order keys in shared memory, those of row indices begin.. (begin % 4
// == 0 is not needed). s: keys to select from the row's n (s >= n selects all; s <= 0 none).
// `ticket`: from the grid barrier the caller arrived at after coop_zero_histograms.
template <int kThreads, class Out>
__device__ __forceinline__ void coop_select_row(CoopSelectSmem& sm, const u32* keys, int len, int begin, int n, int s,
                                                const CoopSelectRow& row, u32 ticket, Out& out) {
  s = min(max(s, 0), n);
  int need = s;                  // keys still to take at and below the prefix
  u32 prefix = 0;                // the threshold's digits decided so far
  int shift = 32;                // the bits below them (32: none decided)
  bool done = s == 0 || s == n;  // nothing to search: T = 0 takes every key (or none is taken)
  const SharedKeys chunk{keys, len};
  for (int level = 0; level < 3; ++level) {
    const RadixLevel lv = radix_level(level, prefix);
    u32* gh = row.hist + level * 2048;
    if (!done) row_histogram<kThreads>(sm, chunk, len, lv);
    if (level == 0) grid_barrier_wait(ticket);  // the histograms are zero everywhere
    if (!done)
      for (int b = threadIdx.x; b < 2048; b += kThreads)
        if (sm.hist[b]) atomicAdd(&gh[b], sm.hist[b]);
    grid_barrier();
    if (!done) {
      for (int b = threadIdx.x; b < 2048; b += kThreads) sm.hist[b] = __ldcg(&gh[b]);
      __syncthreads();
      if (level == 0) {
        int bin, above;
        find_bin<kThreads, 2048>(sm, need, &bin, &above);
        need -= above;
        prefix = static_cast<u32>(bin);
      } else {
        narrow_to_bin<kThreads>(sm, level, &need, &prefix);
      }
      shift = lv.shift;
      done = static_cast<int>(sm.hist[prefix & lv.mask]) == need;  // the bin is all taken: no finer digit
      __syncthreads();  // everyone has read sm.hist before the next level clears it
    }
    phase_mark(2 + level);
  }
  // The threshold T: the smallest key with the decided prefix. Keys above it are taken; of those
  // equal to it, as many as the row still needs after all chunks' keys above it.
  const u32 T = s == n ? 0u : (shift == 32 ? 0xffffffffu : prefix << shift);
  int gt = 0, eq = 0;
  if (s > 0)
    for (int i = threadIdx.x; i < len; i += kThreads) gt += keys[i] > T, eq += keys[i] == T;
  block_exclusive_sum<kThreads>(gt, sm.scratch, &gt);  // the chunk's totals
  block_exclusive_sum<kThreads>(eq, sm.scratch, &eq);
  if (threadIdx.x == 0) row.counts[2 * row.chunk] = gt, row.counts[2 * row.chunk + 1] = eq;
  grid_barrier();
  phase_mark(5);
  if (s == 0) return;
  // Offsets from the chunks before this one (one chunk a thread), and the row's total above T.
  const int c = threadIdx.x;
  const int c_gt = c < row.chunks ? __ldcg(&row.counts[2 * c]) : 0;
  const int c_eq = c < row.chunks ? __ldcg(&row.counts[2 * c + 1]) : 0;
  int gt_total, eq_total;
  const int gt_before = block_exclusive_sum<kThreads>(c_gt, sm.scratch, &gt_total);
  const int eq_before = block_exclusive_sum<kThreads>(c_eq, sm.scratch, &eq_total);
  if (c == row.chunk) sm.bin = gt_before, sm.above = eq_before;
  __syncthreads();
  const int my_gt = sm.bin, my_eq = sm.above;
  const int eq_take = s - gt_total;  // ties taken by the row, the first in index order
  const int quota = min(max(eq_take - my_eq, 0), eq);
  const auto load = [&](int i, u32(&k)[4], int(&idx)[4]) {
    chunk.load4(i, k);
#pragma unroll
    for (int e = 0; e < 4; ++e) idx[e] = begin + i + e;
  };
  emit_above_threshold<kThreads>(sm, load, len, T, quota, my_gt, gt_total + my_eq, out);
  phase_mark(6);
}

// CTA (blockIdx.x, row)'s whole part of the selection: its row's histograms zeroed (with the
// row's other CTAs), its chunk of `keys` (a row of n) loaded into chunk_keys, and s keys selected
// to `out`.
template <int kThreads, class Keys, class Out>
__device__ __forceinline__ void coop_select_chunk(CoopSelectSmem& sm, u32* chunk_keys, const CoopSelectParams& p,
                                                  int row, const Keys& keys, int n, int s, Out& out) {
  const CoopSelectRow r = coop_select_row_of(p, row);
  coop_zero_histograms<kThreads>(r);
  const u32 ticket = grid_barrier_arrive();  // waited for before the first histogram add
  const int begin = blockIdx.x * p.chunk, len = clamp_count(n - begin, p.chunk);
  coop_load_chunk<kThreads>(keys, begin, len, chunk_keys);
  phase_mark(1);
  coop_select_row<kThreads>(sm, chunk_keys, len, begin, n, s, r, ticket, out);
}

}  // namespace tka
