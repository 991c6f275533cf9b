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
//   3. the exact threshold by radix levels whose histograms are summed over the cluster;
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

// What the CTAs of a cluster read from each other (besides the histograms): written by thread 0,
// read after a cluster barrier. Counts of the two attempts use their own slots, so that a CTA
// that starts its second attempt does not overwrite what a slower one still reads.
struct ClusterCounts {
  int run[2];      // candidates kept per attempt (-1: a warp's list overflowed)
  int reached[2];  // keys that reached the attempt's threshold
  int above;       // selected keys above the exact threshold
  int equal;       // candidates equal to it
  int selected;    // entries this CTA emitted
};

// Adds the cluster's level histograms: every CTA ends with the sum in its own sm.hist.
template <int kThreads>
struct ClusterHistSum {
  int ctas;
  template <int kCapacity>
  __device__ __forceinline__ void operator()(RadixSelectSmem<kCapacity>& sm) const {
    constexpr int kPer = (2048 + kThreads - 1) / kThreads;  // bins per thread
    u32 sum[kPer];
    cluster_sync();  // every CTA's histogram is complete
#pragma unroll
    for (int i = 0; i < kPer; ++i) sum[i] = 0;
    for (int c = 0; c < ctas; ++c) {
      const u32* h = cluster_map(sm.hist, c);
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const int b = static_cast<int>(threadIdx.x) + i * kThreads;
        if (b < 2048) sum[i] += h[b];
      }
    }
    cluster_sync();  // every CTA has read every histogram before any is overwritten
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int b = static_cast<int>(threadIdx.x) + i * kThreads;
      if (b < 2048) sm.hist[b] = sum[i];
    }
    __syncthreads();
  }
};

// Sum over the cluster's CTAs of field(counts of CTA c), and the part from CTAs below this one.
template <class Field>
__device__ __forceinline__ int2 cluster_total(ClusterCounts& cc, int ctas, int me, Field field) {
  int total = 0, below = 0;
  for (int c = 0; c < ctas; ++c) {
    const int x = field(*cluster_map(&cc, c));
    total += x;
    below += c < me ? x : 0;
  }
  return make_int2(total, below);
}

// This CTA's slice of a row of n keys: [begin, end), starts aligned to 16 bytes of the input.
template <class Elem>
__device__ __forceinline__ int2 cluster_slice(int n, int ctas, int me) {
  constexpr int kAlign = 16 / sizeof(Elem);
  const int len = ((n + ctas - 1) / ctas + kAlign - 1) / kAlign * kAlign;
  const int begin = min(n, me * len);
  return make_int2(begin, min(n, begin + len));
}

// Selects the row's top s with the cluster; writes this CTA's selected keys to `out` at slots
// from base(above_before, above_total, equal_before) (see below), and returns how many, or -1 when
// both estimates missed (nothing was written; the caller selects the row another way). Every CTA
// of the cluster must call it with the same n and s, and s < n.
//   global slots: keys above the threshold at above_before + rank, equal ones at above_total +
//                 equal_before + rank (one output of s slots over the cluster);
//   local slots:  above at rank, equal at this CTA's above count + rank (the caller sorts and
//                 merges).
template <int kThreads, int kStages, int kCapacity, class Keys, class Out>
__device__ int radix_select_row_cluster(RadixSelectSmem<kCapacity>& sm, ClusterCounts& cc, const Keys& keys, int n,
                                        int s, Out& out, bool global_slots, uint4* ring) {
  const int ctas = cluster_size(), me = cluster_rank();
  const int2 slice = cluster_slice<typename Keys::Elem>(n, ctas, me);
  // A wider first margin than one CTA's: the candidates are spread over C CTAs' lists, so more of
  // them cost little, and a miss costs every CTA a second pass.
  int r = first_sample_rank(n, s, 4.5f), total_reached = 0, run = -1;
  bool hit = false;
#pragma unroll 1
  for (int attempt = 0; attempt < 2 && !hit; ++attempt) {
    if (attempt > 0) r = retry_sample_rank<kCapacity>(n, r, total_reached, s);
    int count;
    RowStream<kThreads, kStages, typename Keys::Elem> stream{ring, keys.row + slice.x, slice.y - slice.x};
    const bool streamed = ring && reinterpret_cast<unsigned long long>(keys.row + slice.x) % 16 == 0;
    if (streamed) stream.start();
    const u32 t = sample_threshold<kThreads>(sm, keys, n, r);
    count = streamed ? stream_candidates<kThreads>(sm, stream, t, slice.x)
                     : load_candidates<kThreads>(sm, keys, slice.x, slice.y, t);
    int reached;
    run = pack_warp_lists<kThreads>(sm, count, &reached);
    if (threadIdx.x == 0) cc.run[attempt] = run, cc.reached[attempt] = reached;
    cluster_sync();
    bool overflow = false;
    for (int c = 0; c < ctas; ++c) overflow |= cluster_map(&cc, c)->run[attempt] < 0;
    const int total_run = cluster_total(cc, ctas, me, [&](const ClusterCounts& x) { return x.run[attempt]; }).x;
    total_reached = cluster_total(cc, ctas, me, [&](const ClusterCounts& x) { return x.reached[attempt]; }).x;
    hit = !overflow && total_run >= s;
  }
  if (!hit) {
    cluster_sync();  // nobody reads this CTA's counts any more
    return -1;
  }
  // 3. The exact threshold over every CTA's candidates.
  int need_eq, eq_total;
  const u32 kth = kth_largest<kThreads>(
      sm, run, s, [&](int c) { return sm.cand_key[c]; }, &need_eq, &eq_total, ClusterHistSum<kThreads>{ctas});
  // 4. This CTA's counts above and at the threshold; its share of the equal ones.
  int above = 0, equal = 0;
  for (int c = threadIdx.x; c < run; c += kThreads) {
    above += sm.cand_key[c] > kth;
    equal += sm.cand_key[c] == kth;
  }
  int packed;
  block_exclusive_sum<kThreads>(above | (equal << 16), sm.scratch, &packed);
  above = packed & 0xffff, equal = packed >> 16;
  if (threadIdx.x == 0) cc.above = above, cc.equal = equal;
  cluster_sync();
  const int2 above_all = cluster_total(cc, ctas, me, [](const ClusterCounts& x) { return x.above; });
  const int equal_below = cluster_total(cc, ctas, me, [](const ClusterCounts& x) { return x.equal; }).y;
  const int take = max(0, min(equal, need_eq - equal_below));
  int last_eq = take == equal ? 0x7fffffff : -1;  // the highest index of a taken equal key
  if (take > 0 && take < equal) {
    int unused_need, unused_count;
    last_eq = static_cast<int>(~kth_largest<kThreads>(
        sm, run, take, [&](int c) { return sm.cand_key[c] == kth ? ~static_cast<u32>(sm.cand_idx[c]) : 0u; },
        &unused_need, &unused_count));
  }
  const auto load_cand = [&](int c, u32 (&k)[4], int (&idx)[4]) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (c + e < run) {
        k[e] = sm.cand_key[c + e];
        idx[e] = sm.cand_idx[c + e];
        if (k[e] == kth && idx[e] > last_eq) idx[e] = -1;
      }
    }
  };
  const int gt_base = global_slots ? above_all.y : 0;
  const int eq_base = global_slots ? above_all.x + min(need_eq, equal_below) : above;
  emit_above_threshold<kThreads>(sm, load_cand, run, kth, take, gt_base, eq_base, out);
  return above + take;
}

// The number of words of a descending list[0, m) greater than w (a binary search; the list may
// live in another CTA's shared memory).
__device__ __forceinline__ int count_greater(const u64* list, int m, u64 w) {
  int lo = 0, hi = m;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (list[mid] > w) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

}  // namespace tka
