// Exact top-s selection of one long row by a thread-block cluster (sm_90+): for when rows are
// fewer than SMs. One CTA per row reads ~22 GB/s (the latency of its copies in flight), so 32 rows
// of 128K would leave 100 SMs idle and take ~25 us for the pass alone; a cluster of C CTAs reads C
// slices at once and ranks the candidates together through distributed shared memory, in one
// launch (the split path needs four, and reads the row three times).
//
//   1. every CTA draws the same sample of the whole row and the same threshold from it (no
//      exchange needed), then streams its own slice: keys at or above the threshold become its
//      candidates (radix_select_sampled.cuh's pass);
//   2. the CTAs exchange their counts; when too few keys reached the threshold, or a CTA's lists
//      overflowed, all retry together with a corrected rank; when that misses too, all report the
//      miss and the caller selects the row in one CTA;
//   3. every CTA copies all candidate keys (distributed shared memory) and finds the exact
//      threshold by itself, the same in each;
//   4. each CTA emits its own selected keys: keys above the threshold, and of the keys equal to
//      it the lowest indices (slices are in index order, so CTA c takes what the CTAs before it
//      left of the count needed).
//
// The same result and tie rule as radix_select_row. Needs n >= C * 4096 or so to pay; the host
// decides.
#pragma once
#include "common/cluster.cuh"
#include "common/radix_select_sampled.cuh"

namespace tka {

// What the CTAs of a cluster read from each other (besides their candidates): written by thread
// 0, read after a cluster barrier. Counts of the two attempts use their own slots, so that a CTA
// that starts its second attempt does not overwrite what a slower one still reads.
struct ClusterCounts {
  int run[2];      // candidates kept per attempt (-1: a warp's list overflowed)
  int reached[2];  // keys that reached the attempt's threshold
  int selected;    // entries this CTA emitted
};

// field(counts of CTA c) for every CTA of the cluster (0 past the cluster's size): independent
// loads, all in flight at once.
template <class Field>
__device__ __forceinline__ void cluster_counts(ClusterCounts& cc, int ctas, Field field, int (&out)[kMaxCluster]) {
#pragma unroll
  for (int c = 0; c < kMaxCluster; ++c) out[c] = c < ctas ? field(*cluster_map(&cc, c)) : 0;
}

// Copies the first len[c] elements of `src` (an array of this CTA's shared memory) of every CTA c
// of the cluster into dst[0, sum of len), CTA after CTA. Each thread loads kUnroll elements
// before storing any, so that the remote loads overlap.
template <int kThreads, class T>
__device__ __forceinline__ void gather_cluster(const T* src, const int (&len)[kMaxCluster], T* dst) {
  constexpr int kUnroll = 4;
  int start[kMaxCluster], total = 0;
#pragma unroll
  for (int c = 0; c < kMaxCluster; ++c) start[c] = total, total += len[c];
  for (int base = 0; base < total; base += kThreads * kUnroll) {
    T v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + u * kThreads + static_cast<int>(threadIdx.x);
      int from = 0;
#pragma unroll
      for (int c = 1; c < kMaxCluster; ++c) from = j >= start[c] && len[c] > 0 ? c : from;
      int at = j;
#pragma unroll
      for (int c = 0; c < kMaxCluster; ++c) at = from == c ? j - start[c] : at;
      if (j < total) v[u] = cluster_map(src, from)[at];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + u * kThreads + static_cast<int>(threadIdx.x);
      if (j < total) dst[j] = v[u];
    }
  }
  __syncthreads();
}

// This CTA's slice of a row of n keys: [begin, end), starts aligned to 16 bytes of the input.
template <class Elem>
__device__ __forceinline__ int2 cluster_slice(int n, int ctas, int me) {
  constexpr int kAlign = 16 / sizeof(Elem);
  const int len = ((n + ctas - 1) / ctas + kAlign - 1) / kAlign * kAlign;
  const int begin = min(n, me * len);
  return make_int2(begin, min(n, begin + len));
}

// Selects the row's top s with the cluster; writes this CTA's selected keys to `out` (slots
// below), and returns how many, or -1 when both estimates missed (nothing was written; the caller
// selects the row another way). Every CTA of the cluster calls it with the same n and s, s < n.
// `scratch` (scratch_words 32-bit words; the ring's bytes, free once the pass is over) receives
// every CTA's candidate keys, so that each CTA finds the exact threshold and its share of the
// equal keys by itself: no barrier per radix level.
//   global slots: keys above the threshold at (above, CTAs before) + rank, equal ones at
//                 (above, all) + (equal taken, CTAs before) + rank: one output of s slots;
//   local slots:  above at rank, equal at this CTA's above count + rank (the caller sorts and
//                 merges).
// Before its shared memory changes, the caller's CTAs must pass one more cluster barrier (the
// others may still be reading its candidates).
// `ranked(runs, total_run, t)` runs once the candidates hold the top s (every CTA's count in
// runs; every candidate's key is >= t but for a -0.0 let through by a +0.0 threshold): a return
// >= 0 ends the selection there (it wrote the row: select.cuh's SortedRanks), -1 goes on to the
// threshold below. It must decide alike in every CTA (cluster_bucket_ranks.cuh's BucketRanks, or
// select.cuh's SortedRanks over it). The candidates stay in the warps' lists (not packed: two
// block barriers and a copy fewer), and each attempt calls ranked.begin(t, top) after the pass
// (top: the upper edge of the sample's largest key, the same in every CTA; candidates may exceed
// it), ranked.count(key) for every candidate of the lists, and ranked.before_exchange() before
// the cluster barrier that exchanges the counts, so that counts of its own ride on that barrier;
// `ranked` then packs the lists (pack_lists, and passes a cluster barrier) before it returns -1.
template <int kThreads, int kStages, int kCapacity, class Keys, class Out, class Ranked>
__device__ int radix_select_row_cluster(RadixSelectSmem<kCapacity>& sm, ClusterCounts& cc, const Keys& keys, int n,
                                        int s, Out& out, bool global_slots, uint4* ring, u32* scratch,
                                        int scratch_words, Ranked& ranked) {
  const int ctas = cluster_size(), me = cluster_rank();
  const int2 slice = cluster_slice<typename Keys::Elem>(n, ctas, me);
  int r = first_sample_rank(n, s), total_reached = 0, total_run = 0, attempt = 0, runs[kMaxCluster];
  u32 hit_t = 0;
  bool hit = false;
#pragma unroll 1
  for (; attempt < 2; ++attempt) {
    if (attempt > 0) r = retry_sample_rank<kCapacity>(n, r, total_reached, s);
    RowStream<kThreads, kStages, typename Keys::Elem> stream{ring, keys.row + slice.x, slice.y - slice.x};
    const bool streamed = ring && reinterpret_cast<unsigned long long>(keys.row + slice.x) % 16 == 0;
    if (streamed) stream.start();
    const u32 t = sample_threshold<kThreads, true>(sm, keys, n, r);
    const int count = streamed ? stream_candidates<kThreads>(sm, stream, t, slice.x)
                               : load_candidates<kThreads>(sm, keys, slice.x, slice.y, t);
    phase_mark(3);
    int reached;
    ranked.begin(t, sm.sample_top << 16 | 0xffffu);  // before warp_lists_total's barrier
    const int run = warp_lists_total<kThreads>(sm, count, &reached);
    const int first = (static_cast<int>(threadIdx.x) >> 5) * WarpLists<kThreads, kCapacity>::kPerWarp;
    for (int i = static_cast<int>(threadIdx.x) & 31; run >= 0 && i < count; i += 32)
      ranked.count(sm.cand_key[first + i]);
    ranked.before_exchange();
    if (threadIdx.x == 0) cc.run[attempt] = run, cc.reached[attempt] = reached;
    cluster_sync();
    int reached_by[kMaxCluster];
    cluster_counts(
        cc, ctas, [&](const ClusterCounts& x) { return x.run[attempt]; }, runs);
    cluster_counts(
        cc, ctas, [&](const ClusterCounts& x) { return x.reached[attempt]; }, reached_by);
    bool overflow = false;
    total_run = 0, total_reached = 0;
#pragma unroll
    for (int c = 0; c < kMaxCluster; ++c) overflow |= runs[c] < 0, total_run += runs[c], total_reached += reached_by[c];
    phase_mark(attempt == 0 ? 4 : 10);
    // Too many for the scratch counts as a miss: the retry aims at fewer.
    hit = !overflow && total_run >= s && total_run <= scratch_words;
    hit_t = t;
    if (hit) break;
  }
  if (!hit) {
    cluster_sync();  // nobody reads this CTA's counts any more
    return -1;
  }
  const int done = ranked(runs, total_run, hit_t);
  if (done >= 0) return done;
  // 3. The exact threshold over every CTA's candidates, the same in every CTA.
  gather_cluster<kThreads>(sm.cand_key, runs, scratch);
  int first = 0;
#pragma unroll
  for (int c = 0; c < kMaxCluster; ++c) first += c < me ? runs[c] : 0;
  const int run = runs[me];
  int need_eq, eq_total;
  const u32 kth = kth_largest<kThreads>(
      sm, total_run, s, [&](int c) { return scratch[c]; }, &need_eq, &eq_total);
  phase_mark(5);
  // 4. Keys above it and equal to it in the CTAs before this one, and in this one.
  int above_below = 0, equal_below = 0, above = 0, equal = 0;
  for (int c = threadIdx.x; c < first + run; c += kThreads) {
    const bool below = c < first;
    above_below += below && scratch[c] > kth, equal_below += below && scratch[c] == kth;
    above += !below && scratch[c] > kth, equal += !below && scratch[c] == kth;
  }
  int packed;
  block_exclusive_sum<kThreads>(above_below | (equal_below << 16), sm.scratch, &packed);
  above_below = packed & 0xffff, equal_below = packed >> 16;
  block_exclusive_sum<kThreads>(above | (equal << 16), sm.scratch, &packed);
  above = packed & 0xffff, equal = packed >> 16;
  const int take = clamp_count(need_eq - equal_below, equal);
  int last_eq = take == equal ? 0x7fffffff : -1;  // the highest index of a taken equal key
  if (take > 0 && take < equal) {
    int unused_need, unused_count;
    last_eq = static_cast<int>(~kth_largest<kThreads>(
        sm, run, take, [&](int c) { return sm.cand_key[c] == kth ? ~static_cast<u32>(sm.cand_idx[c]) : 0u; },
        &unused_need, &unused_count));
  }
  phase_mark(6);
  const CutCandidates<kCapacity> load_cand{sm, run, kth, last_eq};
  const int above_all = s - need_eq;  // keys above the threshold over the cluster
  const int gt_base = global_slots ? above_below : 0;
  const int eq_base = global_slots ? above_all + min(need_eq, equal_below) : above;
  __syncthreads();  // the scratch is read before an Out that writes there (the sort buffer) runs
  emit_above_threshold<kThreads>(sm, load_cand, run, kth, take, gt_base, eq_base, out);
  phase_mark(7);
  return above + take;
}

// The number of words of a descending list[0, m) greater than w (a binary search; the list may
// live in another CTA's shared memory).
__device__ __forceinline__ int count_greater(const u64* list, int m, u64 w) {
  int lo = 0, hi = m;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (list[mid] > w)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

}  // namespace tka
