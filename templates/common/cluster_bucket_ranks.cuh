// The sorted output of a cluster's selection by bucket ranks (a counting sort over the cluster,
// no sort in any CTA), for radix_select_row_cluster's `ranked`: select.cuh's sorted rows, and
// wherever the slots of an unsorted output may as well be in order (select's unsorted rows,
// decode's selection), since it is the shortest path from the candidates to the output.
#pragma once
#include "common/block_scan.cuh"
#include "common/cluster.cuh"
#include "common/memory.cuh"
#include "common/phase_clock.cuh"
#include "common/radix_select_sampled.cuh"

namespace tka {

// The bucket ranks' layout and scale (write_bucket_ranked).
struct BucketScale {
  static constexpr int kBuckets = 2048, kShiftBits = 11;  // sm.hist's bins
  // Words a bucket may hold over the cluster (each is compared with every other one of its
  // bucket); more, and the cluster sorts instead (write_ranked).
  static constexpr int kMaxBucketWords = 128;
  static constexpr int kHeaderWords = (2 * kBuckets + kMaxCluster + 4) / 2;  // g, at and lo, in 64-bit words
  u32 t;
  int shift;
  // Keys in [t, max_key] over the buckets, bucket 0 holding the largest; keys past max_key fall in
  // bucket 0 (monotone still).
  __device__ __forceinline__ BucketScale(u32 t_, u32 max_key) : t(t_) {
    const u32 span = max_key > t ? max_key - t : 0u;
    shift = max(0, 32 - __clz(static_cast<int>(span)) - kShiftBits);  // span >> shift < 2048
  }
  __device__ __forceinline__ int bucket(u32 key) const {
    const u32 d = key > t ? (key - t) >> shift : 0u;
    return kBuckets - 1 - static_cast<int>(min(d, static_cast<u32>(kBuckets - 1)));
  }
  // Whether `bytes` of the region hold the header and some stage.
  __device__ __forceinline__ static bool fits(int s, int bytes) { return s > 0 && bytes / 8 > kHeaderWords; }
  // The bucket counts two to a word (a CTA holds fewer than 2^16 candidates): bucket b in the
  // half b % 2 of word b / 2, so that step 2 reads each thread's buckets as one vector load a CTA.
  __device__ __forceinline__ static void count(u32* pairs, int b) { atomicAdd(&pairs[b >> 1], 1u << (16 * (b & 1))); }
  // This CTA's stage (at most s' < s + kMaxBucketWords words) as plain stores before the other
  // CTAs store there: the region was the ring, whose last writes were cp.async copies, and
  // compute-sanitizer's racecheck reports a remote store over a ring that wrapped (two copies to
  // one address) as a race with the copy, though the copies were waited for before the barrier
  // (bench/NOTES.md). 17 KB a CTA at s = 2048. Needs a cluster barrier before the others' stores.
  template <int kThreads>
  __device__ __forceinline__ static void clear_stage(uint4* region, int bytes, int s) {
    u64* stage = reinterpret_cast<u64*>(region) + kHeaderWords;
    const int stage_words = bytes / 8 - kHeaderWords;
    for (int w = threadIdx.x; w < min(stage_words, s + kMaxBucketWords); w += kThreads) stage[w] = 0;
  }
};

// The sorted output of a cluster by bucket ranks, once its candidates hold the row's top s: a
// counting sort of the candidates' words (key, then the lower index first) over the cluster,
// without a sort in any CTA (write_ranked's sort of ~900 words a CTA measured 7.1 µs of a
// 32 x 128K row, its ranks 4.1; bench/NOTES.md).
//   1. Each CTA counts its candidates into 2048 buckets of the keys in [t, top] (BucketScale:
//      descending, bucket 0 holds the largest keys; monotone, so every word of a bucket ranks
//      below every word of the buckets before it), as BucketRanks does before the candidate
//      counts' cluster barrier, which makes them visible to the cluster.
//   2. Every CTA sums the cluster's counts (distributed shared memory): where each bucket starts
//      in the row's order (g), and where this CTA's words of it start among the bucket's (the
//      counts of the CTAs before it).
//   3. The buckets that start below s' (the end of the bucket holding slot s - 1) are dealt out to
//      the CTAs by where they start, a run of about s' / C slots each; each CTA stores its words
//      into the owner's stage at their bucket's place (remote stores).
//   4. Each CTA ranks the words of its stage within their bucket (counting the larger ones) and
//      writes those ranked below s.
// Returns -1 (nothing written, candidates untouched; one cluster barrier passed) where a bucket
// below s' holds more than 128 words (ties; a few thousand of a row's equal keys, more than ~128
// keys above the sample's largest, or one sampled outlier that stretches the buckets' scale so
// that the rest share a few) or a stage does not fit
// `bytes` of `region` (the ring's); -1 before any barrier where s <= 0 or `region` cannot hold the
// counts; else 0. Decides alike in every CTA.
// This function runs steps 2-4, the candidates in the warps' lists (counts in sm.warp_count).
template <int kThreads, int kCapacity, class Out>
__device__ __forceinline__ int write_bucket_ranked(RadixSelectSmem<kCapacity>& sm, int s, const BucketScale& scale,
                                                   uint4* region, int bytes, const Out& out) {
  constexpr int kBuckets = BucketScale::kBuckets, kMaxBucketWords = BucketScale::kMaxBucketWords;
  constexpr int kPer = kBuckets / kThreads;  // a thread's buckets in step 2
  static_assert(kPer >= 1 && kBuckets % kThreads == 0, "2048 buckets over the CTA's threads");
  constexpr int kHeaderWords = BucketScale::kHeaderWords;
  if (!BucketScale::fits(s, bytes)) return -1;
  const int ctas = cluster_size(), me = cluster_rank();
  int* g = reinterpret_cast<int*>(region);  // [kBuckets + 1]: where each bucket starts over the cluster
  int* at = g + kBuckets + 1;               // [kBuckets]: where this CTA's words of it go, then the cursor
  int* lo = at + kBuckets;                  // [kMaxCluster + 1]: the first slot of each CTA's stage
  u64* stage = reinterpret_cast<u64*>(region) + kHeaderWords;
  const int stage_words = bytes / 8 - kHeaderWords;
  constexpr int kPairs = kPer / 2;  // a thread's words in step 2
  static_assert(kCapacity < 65536 && kPer % 2 == 0, "16-bit counts, two buckets to a word");
  // 2. Buckets [kPer * tid, kPer * tid + kPer): words [kPairs * tid, kPairs * tid + kPairs) of
  // each CTA's packed counts, one vector load a CTA.
  int total[kPer], before[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) total[j] = 0, before[j] = 0;
#pragma unroll
  for (int c = 0; c < kMaxCluster; ++c) {
    if (c < ctas) {
      u32 words[kPairs];
      load_vector(cluster_map(sm.hist, c) + kPairs * threadIdx.x, words);
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const int n = static_cast<int>(words[j / 2] >> (16 * (j % 2)) & 0xffffu);
        total[j] += n, before[j] += c < me ? n : 0;
      }
    }
  }
  int mine = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) mine += total[j];
  int all;
  int start = block_exclusive_sum<kThreads>(mine, sm.scratch, &all);
  int first_of[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int b = kPer * threadIdx.x + j;
    g[b] = start, at[b] = before[j], first_of[j] = start;
    if (start <= s - 1 && s - 1 < start + total[j]) sm.bin = start + total[j];  // s': one bucket holds slot s - 1
    start += total[j];
  }
  if (threadIdx.x == 0) g[kBuckets] = all;
  __syncthreads();
  const int ends = sm.bin;  // s'
  // The largest bucket that goes on (those past s' are never ranked).
  int most = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) most = first_of[j] < ends ? max(most, total[j]) : most;
  most = __reduce_max_sync(kFullMask, most);
  if ((threadIdx.x & 31) == 0) atomicMax(&sm.above, most);
  // 3. CTA c's stage: the buckets whose start is in [c s' / C, (c + 1) s' / C), rounded up to a
  // bucket's start (a binary search of g); CTA C - 1's ends at s'.
  if (threadIdx.x <= ctas) {
    const int c = threadIdx.x, want = (c * ends + ctas - 1) / ctas;
    int a = 0, z = kBuckets;  // the first bucket b with g[b] >= want
    while (a < z) {
      const int mid = (a + z) >> 1;
      if (g[mid] < want)
        a = mid + 1;
      else
        z = mid;
    }
    lo[c] = c == ctas ? ends : min(g[a], ends);
  }
  __syncthreads();
  int widest = 0;
#pragma unroll
  for (int c = 0; c < kMaxCluster; ++c) widest = c < ctas ? max(widest, lo[c + 1] - lo[c]) : widest;
  if (sm.above > kMaxBucketWords || widest > stage_words) {
    cluster_sync();  // nobody reads this CTA's counts any more
    return -1;
  }
  const auto owner = [&](int first) {
    return min(ctas - 1, static_cast<int>(static_cast<long long>(first) * ctas / ends));
  };
  const auto scatter = [&](int c) {
    const u32 key = sm.cand_key[c];
    const int b = scale.bucket(key), first = g[b];
    if (first >= ends) return;
    const int slot = first + atomicAdd(&at[b], 1), o = owner(first);
    cluster_map(stage, o)[slot - lo[o]] =
        (static_cast<u64>(key) << 32) | (0xffffffffu - static_cast<u32>(sm.cand_idx[c]));
  };
  {  // each warp its own list
    constexpr int kPerWarp = WarpLists<kThreads, kCapacity>::kPerWarp;
    const int warp = static_cast<int>(threadIdx.x) >> 5, listed = sm.warp_count[warp];
    for (int i = static_cast<int>(threadIdx.x) & 31; i < listed; i += 32) scatter(warp * kPerWarp + i);
  }
  cluster_sync();  // every stage is full
  phase_mark(8);
  // 4.
  for (int x = lo[me] + threadIdx.x; x < lo[me + 1]; x += kThreads) {
    const u64 w = stage[x - lo[me]];
    const int b = scale.bucket(static_cast<u32>(w >> 32));
    int slot = g[b];
    for (int y = g[b]; y < g[b + 1]; ++y) slot += stage[y - lo[me]] > w;
    if (slot < s) out.write(slot, static_cast<int>(0xffffffffu - static_cast<u32>(w)), static_cast<u32>(w >> 32));
  }
  return 0;
}

// radix_select_row_cluster's `ranked` by bucket ranks alone: the candidates' buckets counted from
// the warps' lists right after the pass, on a scale from the sample's largest key (the same in
// every CTA: no pass for the largest candidate and no exchange of it), the counts riding on the
// candidate counts' cluster barrier; the lists are packed only where the bucket ranks give up
// (then -1, after a cluster barrier). Against counting packed candidates after that barrier on
// the scale of the cluster's largest candidate: 32 x 128K sorted 29.0 -> 26.7 µs (bench/NOTES.md).
// Out: write(slot, index, key), slot in [0, s) of the row's descending order.
template <int kThreads, int kCapacity, class Out>
struct BucketRanks {
  RadixSelectSmem<kCapacity>& sm;
  int s;
  uint4* region;  // the ring's bytes, free once the pass is over
  int bytes;
  const Out& out;
  BucketScale scale{0u, 0u};
  bool bucketed = false;  // the bucket ranks wrote the row (no CTA reads another's memory after)

  // After the pass, before the block barrier after which every warp counts its list (the sample's
  // threshold is done with sm.hist).
  __device__ __forceinline__ void begin(u32 t, u32 top) {
    scale = BucketScale(t, top);
    for (int w = threadIdx.x; w < BucketScale::kBuckets / 2; w += kThreads) sm.hist[w] = 0;
  }
  __device__ __forceinline__ void count(u32 key) { BucketScale::count(sm.hist, scale.bucket(key)); }
  // After that barrier (every thread is done with the ring), before the counts' cluster barrier.
  __device__ __forceinline__ void before_exchange() {
    if (threadIdx.x == 0) sm.above = 0;
    if (BucketScale::fits(s, bytes)) BucketScale::clear_stage<kThreads>(region, bytes, s);
  }
  // 0 where the row is written; else -1, the candidates packed and a cluster barrier passed (what
  // follows reads them, its own and the others').
  __device__ __forceinline__ int operator()(const int (&)[kMaxCluster], int, u32) {
    bucketed = write_bucket_ranked<kThreads>(sm, s, scale, region, bytes, out) >= 0;
    if (bucketed) return 0;
    pack_lists<kThreads>(sm);
    cluster_sync();
    return -1;
  }
};

}  // namespace tka
